"""Engine fixtures. The MVTec AD bottle fixture is in tests/conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def magnetic_tile_folder() -> Path:
    """Return the magnetic-tile folder under $STRUCTCORE_DATASETS, or skip."""
    root = os.environ.get("STRUCTCORE_DATASETS")
    if not root:
        pytest.skip(
            "STRUCTCORE_DATASETS is unset; point it at the datasets folder that "
            "holds magnetic_tile"
        )
    path = Path(root) / "magnetic_tile"
    if not (path / "test" / "good").is_dir():
        pytest.skip(f"magnetic-tile images not found under {path}")
    return path
