"""Tests for app.evaluation.metrics on synthetic maps with known values.

PRO is the mean over connected defect regions of the share of the region's
pixels at or above a threshold, integrated over the false-positive rate of
defect-free pixels from 0 to 0.3 and divided by 0.3. The metric samples the
curve on a grid of 301 rates and starts it one normal pixel above FPR 0, so
on maps of about 10^4 normal pixels it is accurate to about 1e-3.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.evaluation.metrics import image_auroc, pixel_auroc, pro_score

PRO_TOLERANCE = 2e-3


def two_region_masks() -> np.ndarray:
    """Four 64 x 64 masks: a 20 x 20 region in the first, 2 x 2 in the second."""
    masks = np.zeros((4, 64, 64), dtype=np.uint8)
    masks[0, 5:25, 5:25] = 1
    masks[1, 40:42, 40:42] = 1
    return masks


def normal_noise(masks: np.ndarray, seed: int = 0) -> np.ndarray:
    """Maps with distinct values in [0, 0.5) everywhere."""
    return 0.5 * np.random.default_rng(seed).random(masks.shape)


# Image AUROC


def test_image_auroc_by_hand():
    # Defective 0.35 beats one of two good images and 0.8 beats both: 3 of 4.
    auroc = image_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])

    assert auroc == pytest.approx(0.75)


@pytest.mark.parametrize("label", [0, 1])
def test_image_auroc_one_class(label):
    auroc = image_auroc([label] * 4, [0.1, 0.2, 0.3, 0.4])

    assert math.isnan(auroc)


def test_pixel_auroc_perfect_and_inverted():
    masks = two_region_masks()
    maps = normal_noise(masks) + masks

    assert pixel_auroc(masks, maps) == pytest.approx(1.0)
    assert pixel_auroc(masks, -maps) == pytest.approx(0.0)


# PRO


def test_pro_perfect_map():
    masks = two_region_masks()
    maps = normal_noise(masks) + masks  # every defect pixel above every normal one

    assert pro_score(masks, maps) == pytest.approx(1.0, abs=PRO_TOLERANCE)


def test_pro_inverted_map():
    masks = two_region_masks()
    maps = normal_noise(masks) - masks  # every defect pixel below every normal one

    assert pro_score(masks, maps) == pytest.approx(0.0, abs=PRO_TOLERANCE)


def test_pro_counts_each_region_once():
    masks = two_region_masks()
    maps = normal_noise(masks)
    # The 400-pixel region is found at every threshold, the 4-pixel one never:
    # per region that is (1 + 0) / 2, per pixel it would be 400 / 404.
    maps[0][masks[0] == 1] = 1.0
    maps[1][masks[1] == 1] = -1.0

    assert pro_score(masks, maps) == pytest.approx(0.5, abs=PRO_TOLERANCE)


def test_pro_half_detected_region():
    masks = two_region_masks()[:1]
    maps = normal_noise(masks)
    region = np.flatnonzero(masks[0].ravel())
    values = maps[0].ravel()
    values[region[:200]] = 1.0
    values[region[200:]] = -1.0

    assert pro_score(masks, maps) == pytest.approx(0.5, abs=PRO_TOLERANCE)


def test_pro_region_found_at_fpr_tenth():
    # 9900 normal pixels with distinct values and one 100-pixel region whose
    # pixels all equal the value that 10 % of normal pixels reach. The region
    # is found only at FPR >= 0.1, so PRO = (0.3 - 0.1) / 0.3.
    masks = np.zeros((1, 100, 100), dtype=np.uint8)
    masks[0, 40:50, 40:50] = 1
    normal_count = int((masks == 0).sum())
    normal = np.random.default_rng(1).permutation(np.linspace(0, 1, normal_count))
    maps = np.zeros(masks.shape)
    maps[masks == 0] = normal
    maps[masks == 1] = np.sort(normal)[math.ceil(0.9 * normal_count)]

    assert pro_score(masks, maps) == pytest.approx(2 / 3, abs=PRO_TOLERANCE)


def test_pro_perfect_binary_map():
    masks = two_region_masks()

    score = pro_score(masks, masks.astype(np.float32))

    assert score == pytest.approx(1.0, abs=PRO_TOLERANCE)


def test_pro_without_defects():
    masks = np.zeros((2, 16, 16), dtype=np.uint8)

    score = pro_score(masks, normal_noise(masks))

    assert math.isnan(score)
