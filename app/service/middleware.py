"""ASGI middleware: request body limit, access log and request metrics."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.service.metrics import ServiceMetrics
from app.service.problems import ProblemError

logger = logging.getLogger(__name__)


def _too_large(limit: int, size: int | None) -> ProblemError:
    if size is not None:
        sent = f"request body has {size} bytes, more than the limit of {limit} bytes"
    else:
        sent = f"request body is larger than the limit of {limit} bytes"
    return ProblemError(
        413,
        "upload_too_large",
        f"{sent}; send a smaller file, split the upload, or raise "
        "STRUCTCORE_MAX_UPLOAD_BYTES",
        limit=limit,
    )


class BodyLimitMiddleware:
    """Reject request bodies above `max_bytes` while they are being read.

    A declared Content-Length above the limit fails on the first read, and a
    chunked body fails as soon as the bytes received pass the limit, so no
    handler ever buffers more than `max_bytes`. The error is raised inside
    the handler that reads the body, which turns it into a 413 problem.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        declared = _content_length(scope)
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if declared is not None and declared > self.max_bytes:
                raise _too_large(self.max_bytes, declared)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _too_large(self.max_bytes, None)
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class AccessLogMiddleware:
    """Log one line per request and count it in the request metrics.

    The route template labels the metrics ("/products/{product}/score"), so
    their cardinality stays bounded. The log line has the product and model
    version that handlers leave in `request.state`.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        start = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self._record(scope, status, time.perf_counter() - start)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", "unmatched")
        method = scope["method"]
        self.metrics.requests.labels(template, method, str(status)).inc()
        self.metrics.request_seconds.labels(template, method).observe(seconds)

        state = scope.get("state", {})
        product = scope.get("path_params", {}).get("product", "-")
        logger.info(
            "%s %s product=%s version=%s status=%d ms=%.1f",
            method,
            scope["path"],
            product,
            state.get("model_version", "-"),
            status,
            seconds * 1000.0,
        )
