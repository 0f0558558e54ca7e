"""Tests of good-sample uploads, zips included."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi.testclient import TestClient

from app.service.main import create_app
from tests.service.conftest import make_settings, upload
from tests.service.images import gif, noise_png, zip_of


def test_upload_stores_images(client: TestClient, product: str) -> None:
    data = noise_png(40, 30, seed=1)
    response = upload(client, product, [("a.png", data), ("b.png", noise_png(8, 8))])

    assert response.status_code == 200
    report = response.json()
    assert [item["filename"] for item in report["accepted"]] == ["a.png", "b.png"]
    assert report["rejected"] == []
    assert report["num_samples"] == 2
    first = report["accepted"][0]
    assert first["sha256"] == hashlib.sha256(data).hexdigest()
    assert first["sha256"].startswith(first["id"])
    assert (first["width"], first["height"]) == (40, 30)
    assert first["duplicate"] is False


def test_upload_deduplicates(client: TestClient, product: str) -> None:
    data = noise_png(16, 16, seed=2)
    upload(client, product, [("one.png", data)])
    response = upload(client, product, [("again.png", data)])

    assert response.json()["accepted"][0]["duplicate"] is True
    assert response.json()["num_samples"] == 1


def test_upload_rejects_bad_files(client: TestClient, product: str) -> None:
    files = [("notes.txt", b"plain text"), ("anim.gif", gif()), ("empty.png", b"")]
    response = upload(client, product, files)

    assert response.status_code == 200
    reasons = {item["filename"]: item["reason"] for item in response.json()["rejected"]}
    assert reasons == {
        "notes.txt": "not_an_image",
        "anim.gif": "unsupported_format",
        "empty.png": "empty",
    }
    assert response.json()["num_samples"] == 0


def test_zip_with_bad_member(client: TestClient, product: str) -> None:
    archive = zip_of(
        {
            "good/one.png": noise_png(8, 8, seed=3),
            "../../escape.png": noise_png(8, 8, seed=4),
            "bad/readme.txt": b"not an image",
            "inner.zip": zip_of({"x.png": noise_png(8, 8, seed=5)}),
        }
    )
    response = upload(client, product, [("batch.zip", archive)])

    assert response.status_code == 200
    report = response.json()
    accepted = {item["filename"] for item in report["accepted"]}
    assert accepted == {"one.png", "escape.png"}
    assert all(item["archive"] == "batch.zip" for item in report["accepted"])
    rejected = {item["filename"]: item["reason"] for item in report["rejected"]}
    assert rejected == {"readme.txt": "not_an_image", "inner.zip": "nested_zip"}


def test_zip_path_stays_in_store(
    client: TestClient, product: str, tmp_path: Path
) -> None:
    archive = zip_of({"../../../../outside.png": noise_png(8, 8, seed=6)})
    upload(client, product, [("trick.zip", archive)])

    assert not list(tmp_path.rglob("outside.png"))


def test_zip_member_limit(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "store", max_zip_members=2)
    archive = zip_of({f"{i}.png": noise_png(8, 8, seed=i) for i in range(3)})
    with TestClient(create_app(settings)) as client:
        client.post("/products", json={"name": "limited"})
        response = upload(client, "limited", [("many.zip", archive)])

    assert response.status_code == 200
    report = response.json()
    assert report["accepted"] == []
    assert report["rejected"][0]["reason"] == "too_many_members"
    assert "STRUCTCORE_MAX_ZIP_MEMBERS" in report["rejected"][0]["detail"]


def test_zip_bomb_rejected(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "store", max_zip_bytes=1_000_000)
    archive = zip_of({"bomb.png": b"\0" * 5_000_000})
    assert len(archive) < 20_000
    with TestClient(create_app(settings)) as client:
        client.post("/products", json={"name": "limited"})
        response = upload(client, "limited", [("bomb.zip", archive)])

    report = response.json()
    assert report["accepted"] == []
    assert report["rejected"][0]["reason"] == "zip_too_large"


def test_corrupt_zip_rejected(client: TestClient, product: str) -> None:
    archive = zip_of({"a.png": noise_png(8, 8)})
    response = upload(client, product, [("cut.zip", archive[: len(archive) // 2])])

    assert response.json()["rejected"][0]["reason"] == "corrupt_zip"


def test_list_and_delete_sample(client: TestClient, product: str) -> None:
    upload(client, product, [("a.png", noise_png(8, 8, seed=7))])
    samples = client.get(f"/products/{product}/samples").json()
    assert len(samples) == 1
    assert samples[0]["filename"] == "a.png"
    assert samples[0]["format"] == "png"

    response = client.delete(f"/products/{product}/samples/{samples[0]['id']}")
    assert response.status_code == 204
    assert client.get(f"/products/{product}/samples").json() == []


def test_delete_unknown_sample(client: TestClient, product: str) -> None:
    for sample_id in ["0123456789abcdef", "nothex", "*"]:
        response = client.delete(f"/products/{product}/samples/{sample_id}")
        assert response.status_code == 404, sample_id
        assert response.json()["reason"] == "sample_not_found", sample_id


def test_upload_needs_files_part(client: TestClient, product: str) -> None:
    response = client.post(
        f"/products/{product}/samples",
        files=[("file", ("a.png", noise_png(8, 8), "image/png"))],
    )

    assert response.status_code == 422
    assert response.json()["reason"] == "missing_file"


def test_upload_needs_multipart(client: TestClient, product: str) -> None:
    response = client.post(
        f"/products/{product}/samples",
        content=noise_png(8, 8),
        headers={"content-type": "image/png"},
    )

    assert response.status_code == 415
    assert response.json()["reason"] == "unsupported_media_type"


def test_upload_unknown_product(client: TestClient) -> None:
    response = upload(client, "missing", [("a.png", noise_png(8, 8))])

    assert response.status_code == 404
