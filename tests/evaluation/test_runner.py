"""End-to-end test of app.evaluation.runner on a small real bottle subset.

30 good training images, then 10 good and 10 broken test images. The checks
are loose on purpose: the point is that every part of the result is there
and consistent, not the quality on so few images.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from app.engine.config import EngineConfig
from app.engine.descriptor import DISTANCE_NORMS
from app.engine.imageio import decode_image_file
from app.engine.memory_bank import INDEX_TYPES
from app.evaluation.datasets import load_category
from app.evaluation.report import markdown_report
from app.evaluation.runner import evaluate_category
from app.evaluation.synthetic import AREA_SHARE, cut_paste


@pytest.fixture(scope="module")
def result(mvtec_bottle) -> dict:
    category = load_category(mvtec_bottle)
    good = [item for item in category.test if item.label == 0][:10]
    broken = [item for item in category.test if item.label == 1][:10]
    small = dataclasses.replace(category, test=good + broken)
    return evaluate_category(small, EngineConfig(batch_size=4), max_train=30)


def test_result_counts_and_metrics(result):
    assert result["num_train"] == 30
    assert result["image_size"] == [256, 256]
    assert (result["num_test"], result["num_defective"]) == (20, 10)
    assert result["image_auroc"]["default"] >= 0.9
    assert 0.5 < result["pixel_auroc"] <= 1.0
    assert 0.0 <= result["pro"] <= 1.0
    json.dumps(result)  # the CLI writes it as JSON


def test_per_image_values_match_counts(result):
    per_image = result["per_image"]

    assert len(per_image["labels"]) == 20
    assert len(per_image["max_score"]) == 20
    assert len(per_image["phi_patch"][0]) == 3
    crossfit = result["calibration_per_image"]["crossfit"]
    assert len(crossfit["max_score"]) == len(crossfit["phi_blurred"]) == 30


def test_search_ablation_covers_every_index(result):
    rows = {row["index_type"]: row for row in result["search_ablation"]}

    # 30 images give a bank below IVF-PQ's minimum, so that row is left out.
    assert [row["index_type"] for row in result["search_ablation"]] == [
        t for t in INDEX_TYPES if t != "ivfpq"
    ]
    flat = rows["flat"]
    assert flat["image_auroc_default"] == pytest.approx(
        result["image_auroc"]["default"]
    )
    assert flat["patches_over_1pct_above_exact"] == 0.0
    assert rows["ivfflat"]["patches_over_1pct_above_exact"] < 0.05
    assert rows["ivfflat"]["image_auroc_default"] >= 0.9


def test_held_out_descriptor_reported(result):
    held_out = result["held_out_descriptor"]

    assert all(math.isfinite(v) for v in held_out["usual_good_test_z_mean"])
    for name in ("mean", "without_last_fold"):
        assert 0.0 <= held_out[name]["auroc_distance"] <= 1.0
        assert held_out[name]["auroc_hybrid"] >= 0.9
        assert len(held_out[name]["good_test_z_mean"]) == 3


def test_synthetic_lambda_reported(result):
    rows = {row["norm"]: row for row in result["synthetic_lambda"]}

    assert set(rows) == set(DISTANCE_NORMS)
    default = rows["l2"]
    # λ×0 is max pooling alone, and λ×1 is the default image score.
    assert default["test_x0"] == pytest.approx(result["image_auroc"]["max"])
    assert default["test_x1"] == pytest.approx(result["image_auroc"]["default"])
    # Bottle's pasted rectangles are plain to see in its maps.
    assert default["synthetic_x1"] >= 0.9


def test_cut_paste_changes_one_rectangle(mvtec_bottle):
    path = sorted((mvtec_bottle / "train" / "good").iterdir())[0]
    image = decode_image_file(path)

    altered = cut_paste(image, np.random.default_rng(0))

    changed = np.argwhere((altered != image).any(axis=2))
    assert altered.shape == image.shape
    assert altered.dtype == np.uint8
    assert len(changed) > 0
    (top, left), (bottom, right) = changed.min(axis=0), changed.max(axis=0)
    box = (bottom - top + 1) * (right - left + 1)
    assert box <= AREA_SHARE[1] * image.shape[0] * image.shape[1] * 1.01


def test_markdown_report_lists_tables(result):
    document = {
        "command": "structcore-eval bottle",
        "date": "2026-12-04",
        "machine": {"processor": "x86_64", "cpu_threads": 2, "platform": "Linux"},
        "results": [result],
    }

    text = markdown_report(document)

    assert "| bottle | 30 | 256x256 | 20 |" in text
    assert "bank search over the same bank" in text
    assert "| ivfflat |" in text
    assert "leave-one-fold-out scores" in text
    assert "CutPaste defects" in text
