"""Product operations behind the /products routes: create, describe, fit."""

from __future__ import annotations

import logging
from typing import Any

from app.engine.config import EngineConfig
from app.service.context import Services
from app.service.jobs import FitJob
from app.service.problems import ProblemError
from app.service.schemas import FitRequest, ProductSettings
from app.service.store import Product

logger = logging.getLogger(__name__)


def build_config(base: EngineConfig, settings: ProductSettings | None) -> EngineConfig:
    """Apply client settings to `base`, raising a 422 problem for bad values."""
    changes = settings.changes() if settings is not None else {}
    if not changes:
        return base
    try:
        return base.replace(**changes)
    except ValueError as exc:
        raise ProblemError(
            422,
            "invalid_settings",
            f"invalid engine settings {changes}: {exc}",
        ) from exc


def describe(services: Services, product: Product) -> dict[str, Any]:
    """Return the JSON view of a product (ProductOut)."""
    job = services.jobs.unfinished_job(product.name)
    return {
        "name": product.name,
        "created": product.created,
        "settings": product.settings,
        "num_samples": services.store.count_samples(product.name),
        "active_version": services.store.active_version(product.name),
        "fit_job": job.id if job is not None else None,
    }


def create_product(
    services: Services, name: str, settings: ProductSettings | None
) -> dict[str, Any]:
    config = build_config(EngineConfig(), settings)
    product = services.store.create_product(name, config.to_dict())
    logger.info("product %s created", name)
    return describe(services, product)


def delete_product(services: Services, name: str) -> None:
    services.store.get_product(name)
    job = services.jobs.unfinished_job(name)
    if job is not None:
        raise ProblemError(
            409,
            "fit_running",
            f"product {name!r} has fit job {job.id} ({job.state}); cancel it with "
            f"DELETE /jobs/{job.id} before deleting the product",
            job_id=job.id,
        )
    services.store.delete_product(name)
    services.models.forget(name)
    logger.info("product %s deleted", name)


def start_fit(
    services: Services, name: str, request: FitRequest | None, activate: bool | None
) -> FitJob:
    """Queue a fit of the product's good samples with optional overrides."""
    request = request or FitRequest()
    product = services.store.get_product(name)
    base = _stored_config(product)
    config = build_config(base, request.settings)
    effective_activate = request.activate if activate is None else activate
    return services.jobs.submit(name, config, effective_activate)


def _stored_config(product: Product) -> EngineConfig:
    try:
        return EngineConfig.from_dict(product.settings)
    except ValueError as exc:
        raise ProblemError(
            409,
            "invalid_stored_settings",
            f"stored settings of product {product.name!r} are no longer valid for "
            f"this engine ({exc}); recreate the product",
        ) from exc
