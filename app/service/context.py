"""Objects shared by the routes of one app instance, and their dependencies."""

from __future__ import annotations

import hmac
import threading
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from app.service.active_models import ActiveModels
from app.service.jobs import FitJobs
from app.service.metrics import ServiceMetrics
from app.service.problems import ProblemError
from app.service.settings import Settings
from app.service.store import ModelStore


@dataclass
class Services:
    """Everything a request handler needs, created once per app."""

    settings: Settings
    store: ModelStore
    metrics: ServiceMetrics
    models: ActiveModels
    jobs: FitJobs
    device: str
    # Set once the store is recovered and the active models are warm.
    ready: threading.Event = field(default_factory=threading.Event)
    startup_error: str | None = None
    # Held around each engine scoring call, so that at most
    # settings.concurrent_scores of them run at once.
    scoring_slots: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self) -> None:
        self.scoring_slots = threading.BoundedSemaphore(self.settings.concurrent_scores)


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]

_api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="Required only when the server sets STRUCTCORE_API_KEY.",
)


def require_api_key(
    request: Request,
    api_key: Annotated[str | None, Security(_api_key_header)],
) -> None:
    """Reject the request with 401 unless it carries the configured API key."""
    expected = get_services(request).settings.api_key
    if expected is None:
        return
    if api_key is None or not hmac.compare_digest(
        api_key.encode(), expected.get_secret_value().encode()
    ):
        problem = "missing" if api_key is None else "invalid"
        raise ProblemError(
            401,
            "unauthorized",
            f"X-API-Key header is {problem}; send the key the server was "
            "started with in STRUCTCORE_API_KEY",
        )
