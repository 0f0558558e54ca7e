"""Routes for the model versions of a product."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response

from app.service import versions
from app.service.context import ServicesDep, require_api_key
from app.service.problems import problem_responses
from app.service.routes.params import ProductName, Version
from app.service.schemas import ThresholdPatch, VersionOut

router = APIRouter(
    prefix="/products/{product}/models",
    tags=["models"],
    dependencies=[Depends(require_api_key)],
    responses=problem_responses(401, 404, 422),
)


@router.get("", response_model=list[VersionOut])
def list_versions(product: ProductName, services: ServicesDep) -> list[dict[str, Any]]:
    """List the product's model versions, oldest first."""
    return versions.list_versions(services, product)


@router.get("/{version}", response_model=VersionOut)
def get_version(
    product: ProductName, version: Version, services: ServicesDep
) -> dict[str, Any]:
    """Describe one version: threshold, calibration, fit summary."""
    return versions.get_version(services, product, version)


@router.post("/{version}/activate", response_model=VersionOut)
def activate_version(
    product: ProductName, version: Version, services: ServicesDep
) -> dict[str, Any]:
    """Serve this version from now on, for example to roll back."""
    return versions.activate(services, product, version)


@router.patch("/{version}", response_model=VersionOut)
def set_threshold(
    product: ProductName,
    version: Version,
    patch: ThresholdPatch,
    services: ServicesDep,
) -> dict[str, Any]:
    """Change the decision threshold without refitting."""
    return versions.set_threshold(services, product, version, patch)


@router.delete("/{version}", status_code=204, responses=problem_responses(409))
def delete_version(
    product: ProductName, version: Version, services: ServicesDep
) -> Response:
    """Delete a version that is not active."""
    versions.delete(services, product, version)
    return Response(status_code=204)
