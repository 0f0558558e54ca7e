"""Tests of health, readiness, metrics, API key and the OpenAPI document."""

from __future__ import annotations

import re
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


# Routes that respond without X-API-Key when STRUCTCORE_API_KEY is set. The
# README lists the same set.
OPEN_PATHS = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
}


def _example_path(template: str) -> str:
    """Fill a route template's parameters with valid example values."""
    path = template.replace("{version}", "v1")
    return re.sub(r"\{[a-z_]+\}", "x", path)


def test_api_key_open_routes(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "store", api_key="s3cret")
    with TestClient(create_app(settings)) as client:
        spec = client.get("/openapi.json").json()
        requests = [
            (method, template)
            for template, operations in spec["paths"].items()
            for method in operations
        ]
        # The documentation routes are not in the OpenAPI document.
        requests += [("get", path) for path in ["/docs", "/docs/oauth2-redirect"]]
        requests += [("get", "/redoc"), ("get", "/openapi.json")]
        seen = set()
        for method, template in requests:
            response = client.request(method, _example_path(template))
            if template in OPEN_PATHS:
                assert response.status_code != 401, (method, template)
                seen.add(template)
            else:
                assert response.status_code == 401, (method, template)
        asset = client.get("/docs/assets/swagger-ui.css")

    assert seen == OPEN_PATHS
    assert len(requests) > len(OPEN_PATHS) + 10
    assert asset.status_code == 200


def test_docs_pages_load_local_files(client: TestClient) -> None:
    for page in ["/docs", "/redoc"]:
        response = client.get(page)
        assert response.status_code == 200, page
        urls = re.findall(r'(?:src|href)="([^"]+)"', response.text)
        assert urls, page
        for url in urls:
            assert url.startswith("/docs/assets/"), (page, url)
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 1000, url
        assert "http://" not in response.text, page
        assert "https://" not in response.text, page


def test_openapi_errors_are_problems(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()

    checked = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status[0] not in "45" or path == "/readyz":
                    continue
                content = set(response.get("content", {}))
                assert content == {"application/problem+json"}, (method, path, status)
                checked += 1
    assert checked > 0
    assert "422" in spec["paths"]["/jobs/{job_id}"]["get"]["responses"]
