"""Tests of fit jobs and model versions on the shared fitted product."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.service.main import create_app
from tests.service.conftest import Fitted, make_settings, wait_for_job


def score(fitted: Fitted, path: Path, client: TestClient | None = None) -> Any:
    response = (client or fitted.client).post(
        f"/products/{fitted.product}/score",
        content=path.read_bytes(),
        headers={"content-type": "image/png"},
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_fit_job_record(fitted: Fitted) -> None:
    jobs = fitted.client.get("/jobs", params={"product": fitted.product}).json()
    job = fitted.client.get(f"/jobs/{jobs[0]['id']}").json()

    assert job["state"] == "succeeded"
    assert job["progress"] == 1.0
    assert job["model_version"] == fitted.version
    assert job["error"] is None
    assert job["created"] <= job["started"] <= job["finished"]


def test_version_listing(fitted: Fitted) -> None:
    versions = fitted.client.get(f"/products/{fitted.product}/models").json()
    first = versions[0]

    assert first["version"] == "v1"
    assert first["active"] is (fitted.version == "v1")
    assert first["summary"]["bank_size"] > 0
    assert first["num_samples"] == first["summary"]["num_train_images"]
    product = fitted.client.get(f"/products/{fitted.product}").json()
    assert product["active_version"] == fitted.version


def test_second_fit_and_rollback(fitted: Fitted) -> None:
    client = fitted.client
    base = f"/products/{fitted.product}"
    before = score(fitted, fitted.defective[0])

    response = client.post(f"{base}/fit", params={"activate": "false"})
    assert response.status_code == 202
    job = response.json()
    assert job["state"] in ("queued", "running")
    conflict = client.post(f"{base}/fit")
    assert conflict.status_code == 409
    assert conflict.json()["reason"] == "fit_running"
    assert conflict.json()["job_id"] == job["id"]
    assert client.delete(base).status_code == 409
    during = score(fitted, fitted.defective[0])
    assert during["model_version"] == fitted.version

    job = wait_for_job(client, job["id"])
    assert job["state"] == "succeeded", job
    new = job["model_version"]
    assert new != fitted.version
    assert score(fitted, fitted.defective[0])["model_version"] == fitted.version

    response = client.post(f"{base}/models/{new}/activate")
    assert response.status_code == 200
    assert response.json()["active"] is True
    assert score(fitted, fitted.defective[0])["model_version"] == new
    response = client.delete(f"{base}/models/{new}")
    assert response.status_code == 409
    assert response.json()["reason"] == "version_active"

    client.post(f"{base}/models/{fitted.version}/activate")
    after = score(fitted, fitted.defective[0])
    assert after["model_version"] == fitted.version
    assert after["image_score"] == pytest.approx(before["image_score"], abs=1e-6)
    assert client.delete(f"{base}/models/{new}").status_code == 204
    assert client.get(f"{base}/models/{new}").status_code == 404


def wait_until_running(client: TestClient, job_id: str) -> None:
    deadline = time.monotonic() + 60
    job = client.get(f"/jobs/{job_id}").json()
    while job["state"] == "queued" and time.monotonic() < deadline:
        time.sleep(0.005)
        job = client.get(f"/jobs/{job_id}").json()
    assert job["state"] == "running", job


def test_cancel_running_fit(fitted: Fitted) -> None:
    client = fitted.client
    base = f"/products/{fitted.product}"
    versions_before = client.get(f"{base}/models").json()
    # A larger working size than the shared fit's makes this fit last seconds.
    body = {"settings": {"image_size": 512}, "activate": False}

    job = client.post(f"{base}/fit", json=body).json()
    wait_until_running(client, job["id"])
    response = client.delete(f"/jobs/{job['id']}")
    assert response.status_code == 200
    job = wait_for_job(client, job["id"])

    assert job["state"] == "cancelled"
    assert job["error"] is None
    assert job["model_version"] is None
    assert client.get(f"{base}/models").json() == versions_before
    models_dir = fitted.store_dir / fitted.product / "models"
    assert not list(models_dir.glob(".tmp-*"))
    again = client.post(f"/jobs/{job['id']}/cancel")
    assert again.status_code == 409
    assert again.json()["reason"] == "job_finished"


def test_fit_auto_size_undoes_fixed_size(fitted: Fitted) -> None:
    client = fitted.client
    base = f"/products/{fitted.product}"
    assert client.get(base).json()["settings"]["image_size"] == [128, 128]
    body = {"settings": {"image_size": "auto", "short_side": 64}, "activate": False}

    job = client.post(f"{base}/fit", json=body).json()
    client.delete(f"/jobs/{job['id']}")
    wait_for_job(client, job["id"])

    assert job["settings"]["image_size"] is None
    assert job["settings"]["short_side"] == 64


def test_patch_threshold(fitted: Fitted) -> None:
    base = f"/products/{fitted.product}/models/{fitted.version}"
    original = fitted.client.get(base).json()["threshold"]
    good = score(fitted, fitted.good[0])
    lowered = good["image_score"] - 1e-3

    try:
        response = fitted.client.patch(base, json={"threshold": lowered})
        assert response.status_code == 200
        assert response.json()["threshold"] == lowered
        rescored = score(fitted, fitted.good[0])
        assert rescored["threshold"] == lowered
        assert rescored["is_anomalous"] is True
        override = fitted.store_dir / fitted.product / "models" / fitted.version
        stored = json.loads((override / "override.json").read_text())
        assert stored["threshold"] == lowered

        response = fitted.client.patch(base, json={"target_false_reject_rate": 0.5})
        assert response.status_code == 200
        recalibrated = response.json()["threshold"]
        assert response.json()["threshold_override"]["target_false_reject_rate"] == 0.5
        assert score(fitted, fitted.good[0])["threshold"] == recalibrated
    finally:
        fitted.client.patch(base, json={"threshold": original})


def test_patch_threshold_survives_restart(fitted: Fitted) -> None:
    base = f"/products/{fitted.product}/models/{fitted.version}"
    original = fitted.client.get(base).json()["threshold"]
    try:
        fitted.client.patch(base, json={"threshold": original + 0.125})
        settings = make_settings(fitted.store_dir)
        with TestClient(create_app(settings)) as restarted:
            served = score(fitted, fitted.good[0], restarted)
        assert served["threshold"] == original + 0.125
    finally:
        fitted.client.patch(base, json={"threshold": original})


def test_patch_needs_one_field(fitted: Fitted) -> None:
    base = f"/products/{fitted.product}/models/{fitted.version}"
    for body in [{}, {"threshold": 1.0, "target_false_reject_rate": 0.1}]:
        response = fitted.client.patch(base, json=body)
        assert response.status_code == 422, body
        assert response.headers["content-type"] == "application/problem+json"


def test_patch_rate_out_of_range(fitted: Fitted) -> None:
    base = f"/products/{fitted.product}/models/{fitted.version}"
    response = fitted.client.patch(base, json={"target_false_reject_rate": 1.5})

    assert response.status_code == 422


def test_leftover_temp_folder_removed(fitted: Fitted) -> None:
    models_dir = fitted.store_dir / fitted.product / "models"
    leftover = models_dir / ".tmp-crashed-fit"
    leftover.mkdir()
    (leftover / "partial.npy").write_bytes(b"\0" * 16)
    versions = fitted.client.get(f"/products/{fitted.product}/models").json()

    with TestClient(create_app(make_settings(fitted.store_dir))) as restarted:
        listed = restarted.get(f"/products/{fitted.product}/models").json()

    assert not leftover.exists()
    assert [v["version"] for v in listed] == [v["version"] for v in versions]


def test_damaged_version_is_problem(fitted: Fitted, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    shutil.copytree(fitted.store_dir / fitted.product, store_dir / fitted.product)
    model_json = store_dir / fitted.product / "models" / fitted.version / "model.json"
    model_json.write_text("{not json")

    with TestClient(create_app(make_settings(store_dir))) as client:
        ready = wait_ready(client)
        response = client.post(
            f"/products/{fitted.product}/score",
            content=fitted.good[0].read_bytes(),
            headers={"content-type": "image/png"},
        )

    assert ready.status_code == 200
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["reason"] == "model_load_failed"
    assert fitted.version in response.json()["detail"]


def wait_ready(client: TestClient) -> Any:
    deadline = time.monotonic() + 120
    response = client.get("/readyz")
    while response.status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.05)
        response = client.get("/readyz")
    return response
