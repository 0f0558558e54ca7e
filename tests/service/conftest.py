"""Service fixtures: apps on temporary stores and one shared fitted product."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.service.main import create_app
from app.service.settings import Settings

PRODUCT = "bottle"
# Enough good images for a meaningful bank, few enough to fit fast on a CPU.
TRAIN_COUNT = 20
# A small working resolution keeps the CPU fit and scoring fast.
FIT_SETTINGS = {"image_size": 128}
# Above the 512x512 bottle images, so a larger synthetic image can exceed it.
MAX_IMAGE_PIXELS = 600 * 600
JOB_TIMEOUT_S = 600.0


def make_settings(store_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "store_dir": store_dir,
        "api_key": None,
        "max_image_pixels": MAX_IMAGE_PIXELS,
    }
    values.update(overrides)
    return Settings(**values)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_job(client: TestClient, job_id: str) -> dict[str, Any]:
    """Poll GET /jobs/{id} until the job is finished and return it."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not finished after {JOB_TIMEOUT_S} s")


def upload(client: TestClient, product: str, files: list[tuple[str, bytes]]) -> Any:
    parts = [
        ("files", (name, data, "application/octet-stream")) for name, data in files
    ]
    return client.post(f"/products/{product}/samples", files=parts)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """Client of an app on an empty store."""
    with TestClient(create_app(make_settings(tmp_path / "store"))) as test_client:
        yield test_client


@pytest.fixture
def product(client: TestClient) -> str:
    response = client.post("/products", json={"name": "widget"})
    assert response.status_code == 201, response.text
    return "widget"


@dataclass(frozen=True)
class Fitted:
    """A product fitted on real bottle images, served by `client`."""

    client: TestClient
    store_dir: Path
    product: str
    version: str
    good: list[Path]
    defective: list[Path]


@pytest.fixture(scope="session")
def fitted(
    tmp_path_factory: pytest.TempPathFactory, mvtec_bottle: Path
) -> Iterator[Fitted]:
    store_dir = tmp_path_factory.mktemp("fitted") / "store"
    train = sorted((mvtec_bottle / "train" / "good").glob("*.png"))[:TRAIN_COUNT]
    good = sorted((mvtec_bottle / "test" / "good").glob("*.png"))[:4]
    defective = sorted((mvtec_bottle / "test" / "broken_large").glob("*.png"))[:4]

    with TestClient(create_app(make_settings(store_dir))) as test_client:
        body = {"name": PRODUCT, "settings": FIT_SETTINGS}
        response = test_client.post("/products", json=body)
        assert response.status_code == 201, response.text
        files = [(path.name, path.read_bytes()) for path in train]
        response = upload(test_client, PRODUCT, files)
        assert response.status_code == 200, response.text

        response = test_client.post(f"/products/{PRODUCT}/fit")
        assert response.status_code == 202, response.text
        job = wait_for_job(test_client, response.json()["id"])
        assert job["state"] == "succeeded", job
        yield Fitted(
            test_client, store_dir, PRODUCT, job["model_version"], good, defective
        )
