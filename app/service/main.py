"""FastAPI application factory and the `structcore-serve` entry point."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from uvicorn.config import STARTUP_FAILURE

from app.engine.backbone import load_backbone
from app.engine.config import EngineConfig
from app.service.active_models import (
    ActiveModels,
    ModelLoadError,
    NoActiveModelError,
)
from app.service.context import Services
from app.service.jobs import FitJobs
from app.service.metrics import ServiceMetrics
from app.service.middleware import AccessLogMiddleware, BodyLimitMiddleware
from app.service.problems import (
    install_problem_handlers,
    problem_body,
    problem_response,
)
from app.service.routes import fits, models, ops, products, scoring
from app.service.settings import ConfigError, Settings, resolve_device
from app.service.startup import (
    EXIT_CONFIG,
    StartupError,
    bind_socket,
    load_settings,
    lock_store,
)
from app.service.store import (
    ActiveVersionError,
    ModelStore,
    ProductExistsError,
    ProductNotFoundError,
    SampleNotFoundError,
    StoreError,
    VersionNotFoundError,
)

logger = logging.getLogger(__name__)

_STORE_ERROR_STATUS: dict[type[StoreError], int] = {
    ProductNotFoundError: 404,
    SampleNotFoundError: 404,
    VersionNotFoundError: 404,
    ProductExistsError: 409,
    ActiveVersionError: 409,
    NoActiveModelError: 409,
    ModelLoadError: 500,
}
# Side of the blank image scored once per loaded model to warm the backbone.
_WARMUP_SIDE = 64
# URL prefix of the Swagger UI and ReDoc files that fastapi-offline ships, so
# /docs and /redoc load nothing from a CDN.
_DOCS_ASSETS_URL = "/docs/assets"

_DESCRIPTION = """\
Visual inspection with StructCore: PatchCore anomaly maps from a frozen
ImageNet CNN with a coreset memory bank, and a structure-aware image score.

1. `POST /products` creates a product.
2. `POST /products/{product}/samples` uploads good images (or zips of them).
3. `POST /products/{product}/fit` fits a model version; poll `GET /jobs/{id}`.
4. `POST /products/{product}/score` scores a new image; send
   `Accept: image/png` or `?map=overlay` for the anomaly map.

Every error is an RFC 9457 `application/problem+json` object.
"""


async def _handle_store_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StoreError)
    status = _STORE_ERROR_STATUS.get(type(exc), 500)
    body = problem_body(status, str(exc), request.url.path, reason=exc.reason)
    return problem_response(body)


def _warm_up(services: Services) -> None:
    """Load the default backbone and every active model, then mark ready.

    Each active model scores one blank image, so the first request does not
    pay for lazy initialisation. A model that fails to load is logged and
    skipped, because the other products can still be served.
    """
    default = EngineConfig()
    try:
        load_backbone(default.backbone, default.weights_path, services.device)
    except Exception as exc:
        services.startup_error = f"backbone {default.backbone} failed to load: {exc}"
        logger.exception("warm-up failed; /readyz returns 503")
        return

    try:
        products = services.store.list_products()
    except (OSError, ValueError, KeyError) as exc:
        services.startup_error = f"store {services.store.root} is unreadable: {exc}"
        logger.exception("warm-up failed; /readyz returns 503")
        return

    blank = np.zeros((_WARMUP_SIDE, _WARMUP_SIDE, 3), dtype=np.uint8)
    for product in products:
        try:
            if services.store.active_version(product.name) is None:
                continue
            version, model = services.models.get(product.name)
            with services.scoring_slots:
                model.score(blank)
        except ModelLoadError:
            continue  # ActiveModels has logged the cause.
        except Exception:
            logger.exception("warming product %s failed", product.name)
            continue
        logger.info("warmed model %s/%s", product.name, version)
    services.ready.set()
    logger.info("service ready")


def _build_services(settings: Settings) -> Services:
    device = resolve_device(settings.device)
    if settings.torch_threads is not None:
        torch.set_num_threads(settings.torch_threads)
        logger.info("torch uses %d threads", settings.torch_threads)

    store = ModelStore(settings.store_dir)
    metrics = ServiceMetrics()
    active_models = ActiveModels(store, device, metrics)
    jobs = FitJobs(
        store,
        active_models,
        metrics,
        device=device,
        workers=settings.fit_workers,
        max_image_pixels=settings.max_image_pixels,
    )
    return Services(settings, store, metrics, active_models, jobs, device)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    services: Services = app.state.services
    # structcore-serve has taken the lock already; `uvicorn ...:app` takes it here.
    services.store.lock()
    removed = services.store.recover()
    logger.info(
        "store %s opened, %d leftover temporary paths deleted",
        services.store.root,
        len(removed),
    )
    warmup = threading.Thread(
        target=_warm_up, args=(services,), name="structcore-warmup", daemon=True
    )
    warmup.start()
    yield
    logger.info("shutting down: stopping fit jobs")
    services.jobs.shutdown()
    services.store.unlock()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the FastAPI app with its store, model cache and fit workers."""
    settings = settings or Settings()
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    services = _build_services(settings)

    app = FastAPIOffline(
        title="StructCore inspection service",
        version="0.1.0",
        description=_DESCRIPTION,
        lifespan=_lifespan,
        static_url=_DOCS_ASSETS_URL,
    )
    app.state.services = services
    install_problem_handlers(app)
    app.add_exception_handler(StoreError, _handle_store_error)

    for router in (products.router, fits.router, models.router, scoring.router):
        app.include_router(router)
    app.include_router(ops.router)

    # The last middleware added runs first, so the access log records every
    # request, the ones rejected for their size included.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(AccessLogMiddleware, metrics=services.metrics)
    return app


def run() -> None:
    """Start the service from STRUCTCORE_* settings (`structcore-serve`).

    A setting that is invalid exits with status 2, and a port or store in use
    by another process with status 1, each with one line on stderr. The port
    is bound before the store is opened.
    """
    try:
        settings = load_settings()
        try:
            app = create_app(settings)
        except ConfigError as exc:
            raise StartupError(EXIT_CONFIG, str(exc)) from None
        sock = bind_socket(settings.host, settings.port)
        try:
            lock_store(app.state.services.store)
        except StartupError:
            sock.close()
            raise
    except StartupError as exc:
        for line in exc.lines:
            print(f"structcore-serve: {line}", file=sys.stderr)
        raise SystemExit(exc.exit_status) from None

    # The access log middleware writes one line per request already.
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )
    server = uvicorn.Server(config)
    logger.info("starting on http://%s:%d", settings.host, settings.port)
    server.run(sockets=[sock])
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)


# Created by __getattr__ below on first access.
app: FastAPI


def __getattr__(name: str) -> FastAPI:
    """Build `app` on first access, for `uvicorn app.service.main:app`.

    Building it lazily keeps imports of this module free of side effects, so
    `run()` and the tests create only the apps they configure.
    """
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    global app
    app = create_app()
    return app
