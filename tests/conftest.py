"""Fixtures shared by the engine and service tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mvtec_bottle() -> Path:
    """Return the MVTec AD bottle folder under $STRUCTCORE_DATASETS, or skip."""
    root = os.environ.get("STRUCTCORE_DATASETS")
    if not root:
        pytest.skip(
            "STRUCTCORE_DATASETS is unset; point it at the datasets folder that "
            "holds mvtec_ad_512/bottle"
        )
    path = Path(root) / "mvtec_ad_512" / "bottle"
    if not (path / "train" / "good").is_dir():
        pytest.skip(f"MVTec AD bottle images not found under {path}")
    return path
