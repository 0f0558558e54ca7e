"""Tests of the /products routes."""

from __future__ import annotations

import typing

import pytest
from fastapi.testclient import TestClient

from app.engine.config import EngineConfig
from app.engine.memory_bank import INDEX_TYPES
from app.service.schemas import ProductSettings

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


def test_create_product_with_short_side(client: TestClient) -> None:
    body = {"name": "strip", "settings": {"short_side": 192}}
    response = client.post("/products", json=body)

    assert response.status_code == 201
    config = EngineConfig.from_dict(response.json()["settings"])
    assert config.short_side == 192
    assert config.image_size is None


def test_create_product_image_size_auto(client: TestClient) -> None:
    body = {"name": "auto", "settings": {"image_size": "auto"}}
    response = client.post("/products", json=body)

    assert response.status_code == 201
    assert response.json()["settings"]["image_size"] is None


def test_create_product_defaults(client: TestClient) -> None:
    response = client.post("/products", json={"name": "plain"})

    assert response.status_code == 201
    assert response.json()["settings"] == EngineConfig().to_dict()


def test_create_existing_product_conflicts(client: TestClient, product: str) -> None:
    response = client.post("/products", json={"name": product})

    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["reason"] == "product_exists"


NAME_RULE = (
    "use 1 to 64 lowercase letters, digits, '-' or '_', starting with a letter or digit"
)


def test_product_name_rejects_traversal(client: TestClient) -> None:
    for name in ["../etc", "Bottle", "a/b", "", "-lead", "x" * 65, "dot.name", "{x}"]:
        response = client.post("/products", json={"name": name})
        assert response.status_code == 422, name
        assert response.headers["content-type"] == PROBLEM, name
        problem = response.json()
        assert problem["reason"] == "validation_failed", name
        assert problem["detail"] == f"product name {name!r} is invalid; {NAME_RULE}"
        assert problem["errors"][0]["loc"] == ["body", "name"], name


def test_product_name_accepts_rule(client: TestClient) -> None:
    for name in ["a", "0-line_2", "x" * 64]:
        response = client.post("/products", json={"name": name})
        assert response.status_code == 201, name


def test_product_path_rejects_bad_name(client: TestClient) -> None:
    for path, name in [("/products/Bottle", "Bottle"), ("/products/a.b", "a.b")]:
        response = client.get(path)

        assert response.status_code == 422, path
        assert response.headers["content-type"] == PROBLEM, path
        problem = response.json()
        assert problem["detail"] == f"product name {name!r} is invalid; {NAME_RULE}"
        assert problem["errors"][0]["loc"] == ["path", "product"], path


def test_create_product_unknown_setting(client: TestClient) -> None:
    body = {"name": "odd", "settings": {"weights_path": "/etc/passwd"}}
    response = client.post("/products", json=body)

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "unknown product setting 'weights_path'" in detail
    valid = ", ".join(ProductSettings.model_fields)
    assert f"valid settings are {valid}" in detail
    assert "image_size" in valid


def test_fit_unknown_setting(client: TestClient, product: str) -> None:
    body = {"settings": {"coreset": 0.1, "seed": 1}}
    response = client.post(f"/products/{product}/fit", json=body)

    assert response.status_code == 422
    assert "unknown product settings 'coreset', 'seed'" in response.json()["detail"]


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


def test_create_product_index_type(client: TestClient) -> None:
    body = {"name": "fast", "settings": {"index_type": "ivfflat"}}
    response = client.post("/products", json=body)

    assert response.status_code == 201
    assert response.json()["settings"]["index_type"] == "ivfflat"


def test_index_type_choices_match_engine() -> None:
    annotation = ProductSettings.model_fields["index_type"].annotation

    assert set(typing.get_args(typing.get_args(annotation)[0])) == set(INDEX_TYPES)


@pytest.mark.parametrize(
    ("settings", "fragments"),
    [
        ({"index_type": "hnsw"}, ["index_type", "'ivfflat'", "got 'hnsw'"]),
        (
            {"backbone": "resnet5O"},
            ["backbone 'resnet5O' is not a timm model name"],
        ),
        ({"short_side": 8}, ["short_side"]),
    ],
)
def test_create_product_bad_setting(
    client: TestClient, settings: dict, fragments: list[str]
) -> None:
    body = {"name": "odd", "settings": settings}
    response = client.post("/products", json=body)

    assert response.status_code == 422
    detail = response.json()["detail"]
    for fragment in fragments:
        assert fragment in detail
    assert client.get("/products/odd").status_code == 404


def test_union_setting_error_names_field_only(client: TestClient) -> None:
    body = {"name": "odd", "settings": {"image_size": "big"}}
    response = client.post("/products", json=body)

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "body.settings.image_size: " in detail
    assert "image_size.int" not in detail
    assert "tuple[" not in detail
    assert "got 'big'" in detail
