"""End-to-end test of a real uvicorn process: fit, score, restart, score again."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.service.conftest import FIT_SETTINGS, TRAIN_COUNT, free_port
from tests.service.images import zip_of
from tests.service.processes import stop_process, wait_until_ready

REPO_ROOT = Path(__file__).resolve().parents[2]
FIT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Server:
    client: httpx.Client
    process: subprocess.Popen


@contextmanager
def uvicorn_server(store_dir: Path, log_path: Path) -> Iterator[Server]:
    """Run `python -m uvicorn app.service.main:app` until the block ends."""
    port = free_port()
    env = {
        **os.environ,
        "STRUCTCORE_STORE_DIR": str(store_dir),
        "STRUCTCORE_LOG_LEVEL": "INFO",
    }
    env.pop("STRUCTCORE_API_KEY", None)
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "app.service.main:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base_url, timeout=120.0) as client:
            wait_until_ready(client, process, log_path)
            yield Server(client, process)
    finally:
        stop_process(process)


def score_all(client: httpx.Client, paths: list[Path]) -> list[float]:
    scores = []
    for path in paths:
        response = client.post(
            "/products/bottle/score",
            content=path.read_bytes(),
            headers={"content-type": "image/png"},
        )
        assert response.status_code == 200, response.text
        scores.append(response.json()["image_score"])
    return scores


def fit_bottle(client: httpx.Client, train: list[Path]) -> str:
    """Create the product, upload half the images as files and half as a zip."""
    response = client.post(
        "/products", json={"name": "bottle", "settings": FIT_SETTINGS}
    )
    assert response.status_code == 201, response.text
    half = len(train) // 2
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in train[:half]]
    archive = zip_of({p.name: p.read_bytes() for p in train[half:]})
    files.append(("files", ("rest.zip", archive, "application/zip")))
    response = client.post("/products/bottle/samples", files=files)
    assert response.status_code == 200, response.text
    assert len(response.json()["accepted"]) == len(train)

    job = client.post("/products/bottle/fit").json()
    deadline = time.monotonic() + FIT_TIMEOUT_S
    while job["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, "fit did not finish in time"
        time.sleep(0.5)
        job = client.get(f"/jobs/{job['id']}").json()
    assert job["state"] == "succeeded", job
    return job["model_version"]


@pytest.mark.timeout(900)
def test_uvicorn_fit_score_restart(mvtec_bottle: Path, tmp_path: Path) -> None:
    train = sorted((mvtec_bottle / "train" / "good").glob("*.png"))[:TRAIN_COUNT]
    good = sorted((mvtec_bottle / "test" / "good").glob("*.png"))[:3]
    defective = sorted((mvtec_bottle / "test" / "broken_large").glob("*.png"))[:3]
    store_dir = tmp_path / "store"
    log_path = tmp_path / "server.log"

    with uvicorn_server(store_dir, log_path) as server:
        version = fit_bottle(server.client, train)
        good_scores = score_all(server.client, good)
        defective_scores = score_all(server.client, defective)
        response = server.client.post(
            "/products/bottle/score",
            content=defective[0].read_bytes(),
            headers={"content-type": "image/png", "accept": "image/png"},
        )
        kill_during_fit(server)

    assert np.mean(defective_scores) > np.mean(good_scores)
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-model-version"] == version
    assert Image.open(io.BytesIO(response.content)).size == (512, 512)

    with uvicorn_server(store_dir, log_path) as server:
        versions = server.client.get("/products/bottle/models").json()
        restarted_good = score_all(server.client, good)
        restarted_defective = score_all(server.client, defective)

    assert [v["version"] for v in versions] == [version]
    assert versions[0]["active"] is True
    assert not list(store_dir.glob("bottle/models/.tmp-*"))
    assert restarted_good == pytest.approx(good_scores, abs=1e-6)
    assert restarted_defective == pytest.approx(defective_scores, abs=1e-6)
    log = log_path.read_text()
    assert f"product=bottle version={version} status=200" in log


def kill_during_fit(server: Server) -> None:
    """Start a slow fit and kill the server with SIGKILL while it runs."""
    # Four times the working size of the first fit, so this one lasts seconds.
    body = {"settings": {"image_size": 512}}
    job = server.client.post("/products/bottle/fit", json=body).json()
    deadline = time.monotonic() + 60
    while job["state"] == "queued" or job["progress"] < 0.1:
        assert job["state"] in ("queued", "running"), job
        assert time.monotonic() < deadline, "fit did not start in time"
        time.sleep(0.01)
        job = server.client.get(f"/jobs/{job['id']}").json()
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=30)
