"""Tests of health, readiness, metrics, API key and the OpenAPI document."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.service.main import create_app
from tests.service.conftest import make_settings


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_readyz_on_empty_store(client: TestClient) -> None:
    deadline = time.monotonic() + 30
    response = client.get("/readyz")
    while response.status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.05)
        response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["status"] == "ready"


def test_readyz_before_startup(tmp_path: Path) -> None:
    client = TestClient(create_app(make_settings(tmp_path / "store")))

    # Without entering the client, the lifespan (store recovery) never runs.
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "starting"


def sample_value(text: str, name: str, labels: dict[str, str]) -> float | None:
    """Return the value of one sample in Prometheus text, or None."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def test_metrics_count_requests(client: TestClient) -> None:
    client.get("/products/missing")
    text = client.get("/metrics").text

    labels = {"route": "/products/{product}", "method": "GET", "status": "404"}
    assert sample_value(text, "structcore_http_requests_total", labels) == 1.0
    count_labels = {"route": "/products/{product}", "method": "GET"}
    name = "structcore_http_request_duration_seconds_count"
    assert sample_value(text, name, count_labels) == 1.0


def test_api_key_required(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "store", api_key="s3cret")
    with TestClient(create_app(settings)) as client:
        missing = client.get("/products")
        wrong = client.get("/products", headers={"X-API-Key": "nope"})
        right = client.get("/products", headers={"X-API-Key": "s3cret"})
        health = client.get("/healthz")
        metrics = client.get("/metrics")
        ready = client.get("/readyz")

    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert "missing" in missing.json()["detail"]
    assert wrong.status_code == 401
    assert "invalid" in wrong.json()["detail"]
    assert "s3cret" not in wrong.text
    assert right.status_code == 200
    assert health.status_code == 200
    assert metrics.status_code == 200
    assert ready.status_code in (200, 503)


def test_api_key_guards_every_resource(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "store", api_key="s3cret")
    paths = [
        ("get", "/products/p"),
        ("post", "/products/p/fit"),
        ("post", "/products/p/score"),
        ("post", "/products/p/score/batch"),
        ("get", "/products/p/models"),
        ("get", "/jobs/x"),
    ]
    with TestClient(create_app(settings)) as client:
        for method, path in paths:
            response = getattr(client, method)(path)
            assert response.status_code == 401, path


def test_openapi_documents_png_score(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    score = spec["paths"]["/products/{product}/score"]["post"]

    assert "image/png" in score["responses"]["200"]["content"]
    assert "application/json" in score["responses"]["200"]["content"]
    assert "multipart/form-data" in score["requestBody"]["content"]
    assert "image/jpeg" in score["requestBody"]["content"]
    samples = spec["paths"]["/products/{product}/samples"]["post"]
    assert "multipart/form-data" in samples["requestBody"]["content"]
    assert "application/problem+json" in score["responses"]["404"]["content"]


def test_docs_page(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
