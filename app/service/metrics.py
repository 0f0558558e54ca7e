"""Prometheus metrics of one app instance, in a registry of its own."""

from __future__ import annotations

import contextlib

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Scoring takes milliseconds on a GPU and up to seconds on a CPU.
_LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
# A fit takes seconds (tens of images on a GPU) to an hour (thousands on a CPU).
_FIT_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class ServiceMetrics:
    """Request, scoring and fit metrics exposed on GET /metrics."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "structcore_http_requests",
            "HTTP requests by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "structcore_http_request_duration_seconds",
            "HTTP request latency in seconds by route template and method.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.images_scored = Counter(
            "structcore_images_scored",
            "Images scored, by product.",
            ["product"],
            registry=self.registry,
        )
        self.anomalies = Counter(
            "structcore_anomalies",
            "Images scored above the decision threshold, by product.",
            ["product"],
            registry=self.registry,
        )
        self.fit_seconds = Histogram(
            "structcore_fit_duration_seconds",
            "Duration of fit jobs in seconds, by final state.",
            ["state"],
            buckets=_FIT_BUCKETS,
            registry=self.registry,
        )
        self.bank_size = Gauge(
            "structcore_memory_bank_size",
            "Patch features in the memory bank of the active model, by product.",
            ["product"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        """Return every metric in the Prometheus text format."""
        return generate_latest(self.registry)

    def forget_product(self, product: str) -> None:
        """Drop the per-product gauges of a deleted product."""
        with contextlib.suppress(KeyError):
            self.bank_size.remove(product)
