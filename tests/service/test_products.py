"""Tests of the /products routes."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.engine.config import EngineConfig

PROBLEM = "application/problem+json"


def test_create_product_returns_settings(client: TestClient) -> None:
    body = {"name": "cap-2", "settings": {"image_size": 128, "coreset_ratio": 0.05}}
    response = client.post("/products", json=body)

    assert response.status_code == 201
    product = response.json()
    assert product["name"] == "cap-2"
    assert product["num_samples"] == 0
    assert product["active_version"] is None
    config = EngineConfig.from_dict(product["settings"])
    assert tuple(config.image_size) == (128, 128)
    assert config.coreset_ratio == 0.05


def test_create_product_defaults(client: TestClient) -> None:
    response = client.post("/products", json={"name": "plain"})

    assert response.status_code == 201
    assert response.json()["settings"] == EngineConfig().to_dict()


def test_create_existing_product_conflicts(client: TestClient, product: str) -> None:
    response = client.post("/products", json={"name": product})

    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["reason"] == "product_exists"


def test_product_name_rejects_traversal(client: TestClient) -> None:
    for name in ["../etc", "Upper", "a/b", "", "-lead", "x" * 65, "dot.name"]:
        response = client.post("/products", json={"name": name})
        assert response.status_code == 422, name
        assert response.json()["reason"] == "validation_failed", name


def test_product_path_rejects_bad_name(client: TestClient) -> None:
    response = client.get("/products/Bad%20Name")

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


def test_create_product_unknown_setting(client: TestClient) -> None:
    body = {"name": "odd", "settings": {"weights_path": "/etc/passwd"}}
    response = client.post("/products", json=body)

    assert response.status_code == 422
    assert "weights_path" in response.json()["detail"]


def test_create_product_invalid_setting(client: TestClient) -> None:
    body = {"name": "odd", "settings": {"coreset_ratio": 1.5}}
    response = client.post("/products", json=body)

    assert response.status_code == 422
    assert "coreset_ratio" in response.json()["detail"]


def test_list_and_get_products(client: TestClient, product: str) -> None:
    client.post("/products", json={"name": "another"})

    names = [item["name"] for item in client.get("/products").json()]
    assert names == ["another", product]
    response = client.get(f"/products/{product}")
    assert response.status_code == 200
    assert response.json()["name"] == product


def test_unknown_product_not_found(client: TestClient) -> None:
    response = client.get("/products/missing")

    assert response.status_code == 404
    problem = response.json()
    assert problem["reason"] == "product_not_found"
    assert problem["instance"] == "/products/missing"
    assert "POST /products" in problem["detail"]


def test_delete_product(client: TestClient, product: str) -> None:
    response = client.delete(f"/products/{product}")

    assert response.status_code == 204
    assert client.get(f"/products/{product}").status_code == 404
    assert client.delete(f"/products/{product}").status_code == 404


def test_product_without_model_conflicts(client: TestClient, product: str) -> None:
    response = client.post(
        f"/products/{product}/score",
        content=b"\x89PNG\r\n\x1a\n",
        headers={"content-type": "image/png"},
    )

    assert response.status_code == 409
    assert response.json()["reason"] == "no_active_model"
    assert f"/products/{product}/fit" in response.json()["detail"]
