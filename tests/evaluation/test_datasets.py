"""Tests for app.evaluation.datasets on the real MVTec AD and VisA folders.

The counts are those of the published splits: MVTec AD bottle has 209 good
training images and 83 test images (63 defective); VisA macaroni1 has 900
training images and 200 test images (100 anomalous) in split_csv/1cls.csv.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.evaluation.datasets import find_categories, find_split_csv, load_category


@pytest.fixture(scope="module")
def datasets_root() -> Path:
    """Return the folder in $STRUCTCORE_DATASETS, or skip."""
    root = os.environ.get("STRUCTCORE_DATASETS")
    if not root:
        pytest.skip(
            "STRUCTCORE_DATASETS is unset; point it at the datasets folder that "
            "holds mvtec_ad_512, magnetic_tile and visa_512"
        )
    path = Path(root)
    if not path.is_dir():
        pytest.skip(f"STRUCTCORE_DATASETS={root} is not a directory")
    return path


def category_folder(root: Path, *parts: str) -> Path:
    folder = root.joinpath(*parts)
    if not folder.is_dir():
        pytest.skip(f"dataset folder {folder} not found")
    return folder


def test_mvtec_bottle_counts(datasets_root):
    category = load_category(category_folder(datasets_root, "mvtec_ad_512", "bottle"))

    assert category.name == "bottle"
    assert category.layout == "mvtec"
    assert len(category.train) == 209
    assert len(category.test) == 83
    assert sum(item.label for item in category.test) == 63


def test_mvtec_bottle_masks(datasets_root):
    category = load_category(category_folder(datasets_root, "mvtec_ad_512", "bottle"))

    for item in category.test:
        if item.label:
            assert item.mask is not None, item.path
            assert item.mask.is_file(), item.mask
            assert item.defect in {"broken_large", "broken_small", "contamination"}
        else:
            assert item.mask is None, item.path
            assert item.defect == "good"


def test_mvtec_bottle_paths(datasets_root):
    category = load_category(category_folder(datasets_root, "mvtec_ad_512", "bottle"))

    assert category.train == sorted(category.train)
    assert all(path.is_file() for path in category.train)
    assert all(item.path.is_file() for item in category.test)


def test_visa_macaroni1_counts(datasets_root):
    folder = category_folder(datasets_root, "visa_512", "macaroni1")

    category = load_category(folder)

    assert find_split_csv(folder) == datasets_root / "visa_512/split_csv/1cls.csv"
    assert category.name == "macaroni1"
    assert category.layout == "visa"
    assert len(category.train) == 900
    assert len(category.test) == 200
    assert sum(item.label for item in category.test) == 100


def test_visa_macaroni1_files(datasets_root):
    category = load_category(category_folder(datasets_root, "visa_512", "macaroni1"))

    assert all(path.is_file() for path in category.train)
    for item in category.test:
        assert item.path.is_file(), item.path
        if item.label:
            assert item.mask is not None, item.path
            assert item.mask.is_file(), item.mask
        else:
            assert item.mask is None, item.path


def test_find_categories(datasets_root):
    found = {path.name for path in find_categories(datasets_root)}

    assert {"bottle", "magnetic_tile", "macaroni1"} <= found
    assert "split_csv" not in found


def test_load_category_rejects_other_folder(tmp_path):
    (tmp_path / "images").mkdir()

    with pytest.raises(ValueError, match="neither"):
        load_category(tmp_path)
