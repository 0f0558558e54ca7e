"""Model version operations behind /products/{product}/models."""

from __future__ import annotations

import logging
from typing import Any

from app.service.context import Services
from app.service.problems import ProblemError
from app.service.schemas import ThresholdPatch
from app.service.store import VersionInfo, utc_now

logger = logging.getLogger(__name__)


def describe(info: VersionInfo, active_version: str | None) -> dict[str, Any]:
    """Return the JSON view of a version (VersionOut)."""
    summary = info.meta.get("summary", {})
    threshold = info.override["threshold"] if info.override else summary["threshold"]
    return {
        "version": info.version,
        "active": info.version == active_version,
        "created": info.created,
        "job_id": info.meta.get("job_id"),
        "num_samples": info.meta.get("num_samples"),
        "threshold": threshold,
        "threshold_override": info.override,
        "summary": summary,
    }


def list_versions(services: Services, product: str) -> list[dict[str, Any]]:
    active = services.store.active_version(product)
    versions = services.store.list_versions(product)
    return [describe(info, active) for info in versions]


def get_version(services: Services, product: str, version: str) -> dict[str, Any]:
    info = services.store.get_version(product, version)
    return describe(info, services.store.active_version(product))


def activate(services: Services, product: str, version: str) -> dict[str, Any]:
    services.store.get_version(product, version)
    services.models.activate(product, version)
    return get_version(services, product, version)


def delete(services: Services, product: str, version: str) -> None:
    services.store.delete_version(product, version)
    logger.info("model %s/%s deleted", product, version)


def set_threshold(
    services: Services, product: str, version: str, patch: ThresholdPatch
) -> dict[str, Any]:
    """Change a version's decision threshold without refitting.

    The threshold is computed by StructCoreModel.with_threshold, stored as an
    override next to the version's arrays, and served at once if the version
    is active.
    """
    services.store.get_version(product, version)
    cached = services.models.cached(product)
    if cached is not None and cached[0] == version:
        base = cached[1]
    else:
        base = services.store.load_model(product, version, services.device)

    try:
        model = base.with_threshold(
            threshold=patch.threshold,
            target_false_reject_rate=patch.target_false_reject_rate,
        )
    except ValueError as exc:
        raise ProblemError(
            422, "invalid_threshold", f"threshold change rejected: {exc}"
        ) from exc

    override = {
        "threshold": model.threshold,
        "target_false_reject_rate": patch.target_false_reject_rate,
        "updated": utc_now(),
    }
    services.store.set_override(product, version, override)
    services.models.replace_if_active(product, version, model)
    logger.info("model %s/%s threshold set to %s", product, version, model.threshold)
    return get_version(services, product, version)
