"""Routes that start fits and follow or cancel fit jobs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query

from app.service import products
from app.service.context import ServicesDep, require_api_key
from app.service.problems import problem_responses
from app.service.routes.params import ProductName
from app.service.schemas import FitRequest, JobOut

router = APIRouter(
    tags=["fits"],
    dependencies=[Depends(require_api_key)],
    responses=problem_responses(401, 422),
)

_FIT_EXAMPLES = {
    "defaults": {"summary": "Product settings, activate", "value": {}},
    "overrides": {
        "summary": "Smaller coreset, keep the current version serving",
        "value": {"settings": {"coreset_ratio": 0.05}, "activate": False},
    },
}


@router.post(
    "/products/{product}/fit",
    status_code=202,
    response_model=JobOut,
    responses=problem_responses(404, 409, 422),
)
def start_fit(
    product: ProductName,
    services: ServicesDep,
    body: Annotated[FitRequest | None, Body(openapi_examples=_FIT_EXAMPLES)] = None,
    activate: Annotated[
        bool | None,
        Query(description="Serve the new version once fitted; overrides the body."),
    ] = None,
) -> dict[str, Any]:
    """Queue a fit of the product's good samples; poll GET /jobs/{id}."""
    return products.start_fit(services, product, body, activate).view()


@router.get("/jobs", response_model=list[JobOut])
def list_jobs(
    services: ServicesDep,
    product: Annotated[str | None, Query(description="Only this product.")] = None,
) -> list[dict[str, Any]]:
    """List the fit jobs since the server started, oldest first."""
    return [job.view() for job in services.jobs.list_jobs(product)]


@router.get("/jobs/{job_id}", response_model=JobOut, responses=problem_responses(404))
def get_job(job_id: str, services: ServicesDep) -> dict[str, Any]:
    """Return a fit job's state, progress and resulting model version."""
    return services.jobs.get(job_id).view()


@router.delete(
    "/jobs/{job_id}", response_model=JobOut, responses=problem_responses(404, 409)
)
def cancel_job(job_id: str, services: ServicesDep) -> dict[str, Any]:
    """Cancel a queued or running fit; the job ends in state `cancelled`."""
    return services.jobs.cancel(job_id).view()


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobOut,
    responses=problem_responses(404, 409),
)
def cancel_job_post(job_id: str, services: ServicesDep) -> dict[str, Any]:
    """Cancel a fit, like DELETE /jobs/{id}, for clients that cannot DELETE."""
    return services.jobs.cancel(job_id).view()
