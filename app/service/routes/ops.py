"""Operational routes: liveness, readiness and Prometheus metrics.

They never require the API key, so probes and scrapers need no secret.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from app.service.context import ServicesDep
from app.service.schemas import Health

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
def healthz() -> dict[str, str]:
    """Return 200 while the process is alive."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "Not ready yet."}},
)
def readyz(services: ServicesDep) -> Response | dict[str, str]:
    """Return 200 once the store is loaded and the active models are warm."""
    if services.startup_error is not None:
        body = {"status": "failed", "detail": services.startup_error}
        return JSONResponse(body, status_code=503)
    if not services.ready.is_set():
        body = {"status": "starting", "detail": "loading and warming models"}
        return JSONResponse(body, status_code=503)
    return {"status": "ready"}


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
def metrics(services: ServicesDep) -> Response:
    """Return the service metrics in the Prometheus text format."""
    return Response(services.metrics.render(), media_type=services.metrics.content_type)
