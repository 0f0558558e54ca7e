"""Tests for app.engine.coreset.greedy_coreset (greedy k-center selection)."""

from __future__ import annotations

import numpy as np
import pytest

from app.engine import coreset
from app.engine.coreset import greedy_coreset


def farthest_point_traversal(points: np.ndarray, size: int, first: int) -> list[int]:
    """Plain O(N * size) greedy k-center traversal in float64."""
    points = points.astype(np.float64)
    dist2 = ((points - points[first]) ** 2).sum(axis=1)
    selected = [first]
    while len(selected) < size:
        farthest = int(np.argmax(dist2))
        selected.append(farthest)
        dist2 = np.minimum(dist2, ((points - points[farthest]) ** 2).sum(axis=1))
    return selected


def covering_radius(points: np.ndarray, selected: np.ndarray) -> float:
    """Max over all points of the distance to the nearest selected point."""
    centers = points[selected].astype(np.float64)
    dist2 = ((points[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
    return float(np.sqrt(dist2.min(axis=1)).max())


def blobs_with_outliers(seed: int = 0) -> np.ndarray:
    """Four dense blobs of 500 points plus 8 rare outliers far from them."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(4, 16))
    blobs = np.repeat(centers, 500, axis=0) + 0.05 * rng.normal(size=(2000, 16))
    directions = rng.normal(size=(8, 16))
    outliers = 6.0 * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    return np.concatenate([blobs, outliers]).astype(np.float32)


def test_coreset_size_and_indices():
    features = np.random.default_rng(0).normal(size=(500, 64)).astype(np.float32)

    selected = greedy_coreset(features, 50)

    assert selected.shape == (50,)
    assert len(np.unique(selected)) == 50
    assert selected.min() >= 0
    assert selected.max() < 500


@pytest.mark.parametrize("size", [1, 300])
def test_coreset_extreme_sizes(size):
    features = np.random.default_rng(1).normal(size=(300, 8)).astype(np.float32)

    selected = greedy_coreset(features, size)

    assert len(selected) == size
    assert len(np.unique(selected)) == size


def test_coreset_covers_better_than_random():
    points = blobs_with_outliers()
    size = 16

    radius = covering_radius(points, greedy_coreset(points, size))

    for seed in range(5):
        rng = np.random.default_rng(seed)
        random_subset = rng.choice(len(points), size=size, replace=False)
        assert radius < covering_radius(points, random_subset), f"seed {seed}"


def test_coreset_keeps_outliers():
    points = blobs_with_outliers()

    selected = greedy_coreset(points, 16)

    outliers = set(range(2000, 2008))
    assert outliers <= set(selected.tolist())


# The lazy batches must reproduce the plain traversal. At this seed 3000 rows
# take 2 batches with the default 2048 candidates and 27 with 16 candidates.
@pytest.mark.parametrize("candidates", [coreset._CANDIDATES, 16])
def test_coreset_matches_plain_traversal(monkeypatch, candidates):
    monkeypatch.setattr(coreset, "_CANDIDATES", candidates)
    monkeypatch.setattr(coreset, "_BLOCK_ROWS", 700)
    features = np.random.default_rng(2).normal(size=(3000, 16)).astype(np.float32)

    # 16 dimensions are below the projection's 128, so no projection happens.
    selected = greedy_coreset(features, 300, seed=3)

    expected = farthest_point_traversal(features, 300, int(selected[0]))
    np.testing.assert_array_equal(selected, expected)


def test_coreset_matches_plain_traversal_projected():
    features = np.random.default_rng(4).normal(size=(2500, 200)).astype(np.float32)

    selected = greedy_coreset(features, 200, projection_dim=32, seed=5)

    projected = coreset._project(features, 32, 5)
    assert projected.shape == (2500, 32)
    expected = farthest_point_traversal(projected, 200, int(selected[0]))
    np.testing.assert_array_equal(selected, expected)


def test_coreset_first_center_depends_on_seed():
    features = np.random.default_rng(6).normal(size=(400, 8)).astype(np.float32)

    firsts = {int(greedy_coreset(features, 1, seed=seed)[0]) for seed in range(5)}

    assert len(firsts) > 1


def test_coreset_identical_rows():
    row = np.random.default_rng(7).normal(size=64).astype(np.float32)
    features = np.tile(row, (20000, 1))

    selected = greedy_coreset(features, 2000)

    assert len(selected) == 2000
    assert len(np.unique(selected)) == 2000


def test_coreset_few_distinct_rows():
    distinct = 5.0 * np.random.default_rng(8).normal(size=(3, 64))
    features = np.repeat(distinct, 4000, axis=0).astype(np.float32)

    selected = greedy_coreset(features, 500)

    assert len(np.unique(selected)) == 500
    # The first three picks are one copy of each distinct row.
    assert sorted(selected[:3] // 4000) == [0, 1, 2]


@pytest.mark.parametrize("size", [0, -1, 101])
def test_coreset_invalid_size(size):
    features = np.zeros((100, 4), dtype=np.float32)

    with pytest.raises(ValueError, match="coreset size"):
        greedy_coreset(features, size)


def test_coreset_should_stop():
    features = np.random.default_rng(9).normal(size=(100, 4)).astype(np.float32)

    with pytest.raises(InterruptedError):
        greedy_coreset(features, 10, should_stop=lambda: True)
