"""Readers for the MVTec AD and VisA folder layouts."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class TestItem:
    """One test image with its label (1 = defective) and optional mask."""

    path: Path
    label: int
    defect: str
    mask: Path | None


@dataclass(frozen=True)
class Category:
    """Training images and test items of one category."""

    name: str
    layout: str
    train: list[Path]
    test: list[TestItem]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)


def _mvtec(folder: Path) -> Category:
    test = []
    for defect_dir in sorted(p for p in (folder / "test").iterdir() if p.is_dir()):
        defect = defect_dir.name
        for path in _images(defect_dir):
            mask = None
            if defect != "good":
                candidate = folder / "ground_truth" / defect / f"{path.stem}_mask.png"
                mask = candidate if candidate.is_file() else None
            test.append(TestItem(path, int(defect != "good"), defect, mask))
    return Category(folder.name, "mvtec", _images(folder / "train" / "good"), test)


def _visa(folder: Path, split_csv: Path) -> Category:
    root = split_csv.parent.parent
    train, test = [], []
    with split_csv.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["object"] != folder.name:
                continue
            path = root / row["image"]
            if row["split"] == "train":
                train.append(path)
                continue
            label = int(row["label"] != "normal")
            mask = root / row["mask"] if row.get("mask") else None
            test.append(TestItem(path, label, row["label"], mask))
    return Category(folder.name, "visa", sorted(train), test)


def find_split_csv(folder: Path) -> Path | None:
    """Return VisA's split_csv/1cls.csv above a category folder, if any."""
    for parent in (folder, folder.parent):
        candidate = parent / "split_csv" / "1cls.csv"
        if candidate.is_file():
            return candidate
    return None


def load_category(folder: Path) -> Category:
    """Read a category folder in MVTec AD or VisA layout."""
    folder = Path(folder)
    if (folder / "train" / "good").is_dir() and (folder / "test").is_dir():
        return _mvtec(folder)
    split_csv = find_split_csv(folder)
    if (folder / "Data" / "Images").is_dir() and split_csv is not None:
        return _visa(folder, split_csv)
    msg = (
        f"{folder} is neither an MVTec AD category (train/good, test/) nor a VisA "
        "category (Data/Images with split_csv/1cls.csv beside it)"
    )
    raise ValueError(msg)


def find_categories(root: Path) -> list[Path]:
    """Return the category folders at or below `root` (one level deep)."""
    root = Path(root)
    try:
        load_category(root)
        return [root]
    except ValueError:
        pass
    found = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            load_category(child)
            found.append(child)
        except ValueError:
            found.extend(find_categories(child) if child.name != "split_csv" else [])
    return found
