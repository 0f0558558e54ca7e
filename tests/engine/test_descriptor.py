"""Tests for app.engine.descriptor: phi(S), the distance D and calibration.

Expected values are worked out by hand from the definitions: population std,
mean of the top 1 % of pixels (at least one), and anisotropic total variation
(sum of absolute horizontal and vertical differences) divided by H * W.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from app.engine.descriptor import (
    DISTANCE_NORMS,
    Calibration,
    calibrate,
    structural_descriptor,
    structural_distance,
)

# Columns of phi.
STD, TOP1, TV = 0, 1, 2


def describe_one(values: np.ndarray) -> np.ndarray:
    """Return phi of one (H, W) map."""
    maps = torch.from_numpy(np.asarray(values, dtype=np.float32))[None]
    return structural_descriptor(maps)[0]


# Structural descriptor


def test_descriptor_ramp_10x10():
    # Pixels 0..99 row by row: the variance of 0..n-1 is (n^2 - 1) / 12.
    phi = describe_one(np.arange(100).reshape(10, 10))

    # 10 rows of 9 horizontal steps of 1, 9 rows of vertical steps of 10
    # over 10 columns.
    variation = 10 * 9 * 1 + 9 * 10 * 10
    assert phi[STD] == pytest.approx(math.sqrt((100**2 - 1) / 12))
    assert phi[TOP1] == pytest.approx(99.0)  # 1 % of 100 pixels is 1 pixel
    assert phi[TV] == pytest.approx(variation / 100)


def test_descriptor_ramp_non_square():
    phi = describe_one(np.arange(100).reshape(4, 25))

    # 4 rows of 24 horizontal steps of 1, 3 rows of steps of 25 over 25 columns.
    variation = 4 * 24 * 1 + 3 * 25 * 25
    assert phi[STD] == pytest.approx(math.sqrt((100**2 - 1) / 12))
    assert phi[TOP1] == pytest.approx(99.0)
    assert phi[TV] == pytest.approx(variation / 100)


def test_descriptor_spikes_20x20():
    # Five isolated interior spikes on zeros. 1 % of 400 pixels is 4 pixels.
    values = np.zeros((20, 20))
    spikes = {(2, 2): 10.0, (2, 10): 8.0, (10, 5): 6.0, (15, 15): 4.0, (8, 17): 2.0}
    for position, value in spikes.items():
        values[position] = value
    phi = describe_one(values)

    total = 10 + 8 + 6 + 4 + 2
    squares = 100 + 64 + 36 + 16 + 4
    mean = total / 400
    # An interior spike differs from its 4 zero neighbours by its own value.
    assert phi[STD] == pytest.approx(math.sqrt(squares / 400 - mean**2))
    assert phi[TOP1] == pytest.approx((10 + 8 + 6 + 4) / 4)
    assert phi[TV] == pytest.approx(4 * total / 400)


def test_descriptor_checkerboard():
    values = np.indices((4, 4)).sum(axis=0) % 2
    phi = describe_one(values)

    # Every one of the 4 * 3 horizontal and 3 * 4 vertical steps is 1.
    assert phi[STD] == pytest.approx(0.5)
    assert phi[TOP1] == pytest.approx(1.0)
    assert phi[TV] == pytest.approx((12 + 12) / 16)


def test_descriptor_small_map_top_is_max():
    # 1 % of 9 pixels rounds up to one pixel, the maximum.
    phi = describe_one(np.array([[0, 1, 2], [3, 7, 5], [6, 4, 8]]))

    assert phi[TOP1] == pytest.approx(8.0)


def test_descriptor_batch_rows_independent():
    spike = np.zeros((20, 20), dtype=np.float32)
    spike[5, 5] = 4.0
    maps = torch.from_numpy(np.stack([spike, np.zeros_like(spike)]))

    phi = structural_descriptor(maps)

    assert phi.shape == (2, 3)
    assert phi[0, TOP1] == pytest.approx(1.0)  # 4 top pixels: one 4, three 0
    np.testing.assert_array_equal(phi[1], [0.0, 0.0, 0.0])


# Structural distance

Z_SCORES = np.array(
    [
        [3.0, -4.0, 0.0],
        [-1.0, 2.0, -2.0],
        [-1.0, -1.0, -1.0],
    ]
)

EXPECTED_DISTANCES = {
    "l2": [5.0, 3.0, math.sqrt(3.0)],
    "linf": [4.0, 2.0, 1.0],
    # Only z > 0 counts: [3, 0, 0], [0, 2, 0] and [0, 0, 0].
    "l2_upper": [3.0, 2.0, 0.0],
    "linf_upper": [3.0, 2.0, 0.0],
}


@pytest.mark.parametrize("norm", DISTANCE_NORMS)
def test_distance_norms(norm):
    distances = structural_distance(Z_SCORES, norm)

    np.testing.assert_allclose(distances, EXPECTED_DISTANCES[norm])


def test_distance_unknown_norm():
    with pytest.raises(ValueError, match="l1"):
        structural_distance(Z_SCORES, "l1")


# Calibration

# Three good images whose descriptor dimensions have different scales but the
# same standardised values, z = -sqrt(1.5), 0, +sqrt(1.5) in every dimension.
STEP_DESCRIPTORS = np.array(
    [
        [0.0, 0.0, 0.0],
        [1.0, 10.0, 100.0],
        [2.0, 20.0, 200.0],
    ]
)
STEP_MAX_SCORES = np.array([1.0, 2.0, 4.0])


def test_calibrate_statistics_by_hand():
    calibration = calibrate(STEP_DESCRIPTORS, STEP_MAX_SCORES, "l2")

    # Population std of (0, 1, 2) is sqrt(2/3).
    np.testing.assert_allclose(calibration.mean, [1.0, 10.0, 100.0])
    np.testing.assert_allclose(
        calibration.std, np.sqrt(2 / 3) * np.array([1.0, 10.0, 100.0])
    )
    assert calibration.norm == "l2"


def test_calibrate_lambda_l2_by_hand():
    calibration = calibrate(STEP_DESCRIPTORS, STEP_MAX_SCORES, "l2")

    # D = sqrt(3 * 1.5) for the outer images and 0 for the middle one, so
    # std(D) = sqrt(2 * 4.5) / 3 = 1. std(1, 2, 4) = sqrt(14) / 3.
    d_outer = math.sqrt(4.5)
    weight = math.sqrt(14) / 3
    assert calibration.structure_weight == pytest.approx(weight)
    np.testing.assert_allclose(
        calibration.distances(STEP_DESCRIPTORS), [d_outer, 0.0, d_outer], atol=1e-12
    )
    np.testing.assert_allclose(
        calibration.image_scores(STEP_MAX_SCORES, STEP_DESCRIPTORS),
        [1.0 + weight * d_outer, 2.0, 4.0 + weight * d_outer],
    )


def test_calibrate_lambda_linf_by_hand():
    calibration = calibrate(STEP_DESCRIPTORS, STEP_MAX_SCORES, "linf")

    # D = sqrt(1.5), 0, sqrt(1.5), so std(D) = sqrt(1.5) * sqrt(2) / 3.
    d_spread = math.sqrt(1.5) * math.sqrt(2) / 3
    assert calibration.structure_weight == pytest.approx((math.sqrt(14) / 3) / d_spread)


def test_calibrate_fixed_weight():
    calibration = calibrate(
        STEP_DESCRIPTORS, STEP_MAX_SCORES, "l2", structure_weight=0.5
    )

    assert calibration.structure_weight == 0.5


def assert_finite_calibration(calibration: Calibration, descriptors: np.ndarray):
    max_scores = np.full(len(descriptors), 3.0)
    assert np.isfinite(calibration.mean).all()
    assert np.isfinite(calibration.std).all()
    assert (calibration.std > 0).all()
    assert math.isfinite(calibration.structure_weight)
    assert np.isfinite(calibration.image_scores(max_scores, descriptors)).all()
    other = descriptors + np.array([0.1, -0.2, 0.3])
    assert np.isfinite(calibration.image_scores(max_scores, other)).all()


@pytest.mark.parametrize("row", [[0.5, 2.0, 0.1], [0.0, 0.0, 0.0]])
def test_calibrate_constant_descriptors(row):
    descriptors = np.tile(row, (8, 1))

    with pytest.warns(RuntimeWarning, match="does not vary"):
        calibration = calibrate(descriptors, np.full(8, 3.0), "l2")

    assert_finite_calibration(calibration, descriptors)


def test_calibrate_single_image():
    descriptors = np.array([[0.5, 2.0, 0.1]])

    with pytest.warns(RuntimeWarning):
        calibration = calibrate(descriptors, np.array([3.0]), "linf")

    assert_finite_calibration(calibration, descriptors)


def test_calibration_dict_round_trip():
    calibration = calibrate(STEP_DESCRIPTORS, STEP_MAX_SCORES, "l2_upper")

    restored = Calibration.from_dict(calibration.to_dict())

    np.testing.assert_array_equal(restored.mean, calibration.mean)
    np.testing.assert_array_equal(restored.std, calibration.std)
    assert restored.structure_weight == calibration.structure_weight
    assert restored.norm == "l2_upper"
