"""Tests that every error is an RFC 9457 problem with the right status."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.service.main import create_app
from tests.service.conftest import make_settings, upload
from tests.service.images import noise_png

PROBLEM = "application/problem+json"
PROBLEM_MEMBERS = {"type", "title", "status", "detail", "instance"}


def test_unknown_route_is_problem(client: TestClient) -> None:
    response = client.get("/no/such/route")

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert PROBLEM_MEMBERS <= problem.keys()
    assert problem["status"] == 404
    assert problem["reason"] == "route_not_found"


def test_wrong_method_is_problem(client: TestClient) -> None:
    response = client.put("/products")

    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM


def test_validation_error_is_problem(client: TestClient) -> None:
    response = client.post("/products", json={"settings": {}})

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["reason"] == "validation_failed"
    assert problem["errors"][0]["loc"] == ["body", "name"]
    assert "name" in problem["detail"]


def test_malformed_json_is_problem(client: TestClient) -> None:
    body = b'{"name": "x",\n "settings": {'
    response = client.post(
        "/products", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    detail = response.json()["detail"]
    assert detail.startswith("request body is not valid JSON: ")
    assert "at line 2, column 15 (character 28)" in detail


def test_body_not_json_object(client: TestClient) -> None:
    cases = {
        b"": "request body is missing",
        b"[1]": "request body must be a JSON object",
    }
    for body, expected in cases.items():
        response = client.post(
            "/products", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422, body
        assert response.json()["detail"].startswith(expected), body


def test_unknown_body_field(client: TestClient) -> None:
    response = client.post("/products", json={"name": "x", "nmae": "y"})

    assert response.status_code == 422
    assert "unknown field 'nmae' in the request body" in response.json()["detail"]


@pytest.fixture
def small_limit_client(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(tmp_path / "store", max_upload_bytes=2_000)
    with TestClient(create_app(settings)) as client:
        client.post("/products", json={"name": "small"})
        yield client


def test_upload_over_limit(small_limit_client: TestClient) -> None:
    response = upload(small_limit_client, "small", [("a.png", noise_png(64, 64))])

    assert response.status_code == 413
    problem = response.json()
    assert problem["reason"] == "upload_too_large"
    assert problem["limit"] == 2_000
    assert "STRUCTCORE_MAX_UPLOAD_BYTES" in problem["detail"]


def test_chunked_upload_over_limit(small_limit_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b"x" * 1_000

    response = small_limit_client.post(
        "/products/small/samples",
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=abc"},
    )

    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json()["reason"] == "upload_too_large"


def test_json_body_over_limit(small_limit_client: TestClient) -> None:
    body = {"name": "big", "settings": {"backbone": "x" * 5_000}}
    response = small_limit_client.post("/products", json=body)

    assert response.status_code == 413


def test_malformed_multipart(client: TestClient, product: str) -> None:
    response = client.post(
        f"/products/{product}/samples",
        content=b"garbage",
        headers={"content-type": "multipart/form-data"},
    )

    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["reason"] == "invalid_multipart"


def test_too_many_files(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "store", max_zip_members=2)
    files = [(f"{i}.png", noise_png(8, 8, seed=i)) for i in range(3)]
    with TestClient(create_app(settings)) as client:
        client.post("/products", json={"name": "few"})
        response = upload(client, "few", files)

    assert response.status_code == 413
    assert response.json()["reason"] == "too_many_files"
    assert response.json()["limit"] == 2


def test_too_few_samples(client: TestClient, product: str) -> None:
    from app.engine.model import MIN_TRAIN_IMAGES

    upload(client, product, [("a.png", noise_png(8, 8))])
    response = client.post(f"/products/{product}/fit")

    assert response.status_code == 422
    problem = response.json()
    assert problem["reason"] == "too_few_samples"
    assert problem["minimum"] == MIN_TRAIN_IMAGES
    assert str(MIN_TRAIN_IMAGES) in problem["detail"]


def test_fit_unknown_product(client: TestClient) -> None:
    assert client.post("/products/missing/fit").status_code == 404


def test_unknown_job(client: TestClient) -> None:
    response = client.get("/jobs/nope")

    assert response.status_code == 404
    assert response.json()["reason"] == "job_not_found"


def test_fit_invalid_override(client: TestClient, product: str) -> None:
    body = {"settings": {"coreset_ratio": 0}}
    response = client.post(f"/products/{product}/fit", json=body)

    assert response.status_code == 422
    assert response.json()["reason"] == "validation_failed"


def test_unknown_version(client: TestClient, product: str) -> None:
    for path in ["/models/v9", "/models/v9/activate"]:
        method = client.post if path.endswith("activate") else client.get
        response = method(f"/products/{product}{path}")
        assert response.status_code == 404, path
        assert response.json()["reason"] == "version_not_found", path


def test_bad_version_name(client: TestClient, product: str) -> None:
    response = client.get(f"/products/{product}/models/latest")

    assert response.status_code == 422
    assert response.json()["detail"].startswith("model version 'latest' is invalid")
