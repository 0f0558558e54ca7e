"""Tests for the fold-wise coreset and cross-fit folds in app.engine.fitting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.engine.config import EngineConfig
from app.engine.coreset import greedy_coreset
from app.engine.fitting import fold_of_images, foldwise_coreset

PATCHES = 4 * 5  # a 4 x 5 patch grid per image


def random_grid(images: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(images, 4, 5, 12)).astype(np.float32)


@pytest.mark.parametrize(("images", "ratio"), [(23, 0.1), (10, 0.25), (3, 0.5)])
def test_foldwise_coreset_total_size(images, ratio):
    config = EngineConfig(coreset_ratio=ratio)

    selected = foldwise_coreset(random_grid(images), config)

    assert len(selected) == math.ceil(ratio * (images * PATCHES))
    assert len(np.unique(selected)) == len(selected)


def test_foldwise_coreset_per_fold():
    grid = random_grid(23, seed=1)
    config = EngineConfig(coreset_ratio=0.2)
    rows = grid.reshape(-1, grid.shape[-1])
    fold = fold_of_images(23, config.crossfit_folds, config.seed)

    selected = foldwise_coreset(grid, config)

    source_fold = fold[selected // PATCHES]
    for f in range(config.crossfit_folds):
        images = np.flatnonzero(fold == f)
        members = (images[:, None] * PATCHES + np.arange(PATCHES)).ravel()
        own = greedy_coreset(
            rows[members],
            int(np.sum(source_fold == f)),
            projection_dim=config.coreset_projection_dim,
            seed=config.seed + f,
        )
        # Leaving this fold out of the bank leaves only other folds' coresets.
        np.testing.assert_array_equal(selected[source_fold == f], members[own])


def test_foldwise_coreset_stops_when_asked():
    config = EngineConfig(coreset_ratio=0.5)

    with pytest.raises(InterruptedError):
        foldwise_coreset(random_grid(10), config, should_stop=lambda: True)
