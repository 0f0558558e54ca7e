"""Tests for app.engine.anomaly_map against scipy's Gaussian filter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from app.engine.anomaly_map import (
    anomaly_maps,
    gaussian_blur,
    resize_map,
    upsample_and_blur,
)


def scipy_blur(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Reference: whole-sample symmetric borders, kernel radius 4 sigma."""
    return np.stack(
        [
            ndimage.gaussian_filter(
                m.astype(np.float64), sigma, mode="mirror", truncate=4.0
            )
            for m in maps
        ]
    )


@pytest.mark.parametrize(
    ("height", "width", "sigma"),
    [(64, 48, 4.0), (40, 40, 1.0), (33, 70, 2.5), (32, 32, 4.0), (256, 256, 4.0)],
)
def test_blur_matches_scipy(height, width, sigma):
    rng = np.random.default_rng(0)
    maps = rng.random((2, height, width)).astype(np.float32)

    blurred = gaussian_blur(torch.from_numpy(maps), sigma).numpy()

    assert blurred.shape == maps.shape
    np.testing.assert_allclose(blurred, scipy_blur(maps, sigma), atol=1e-5)


@pytest.mark.parametrize(("side", "sigma"), [(32, 8.0), (20, 8.0)])
def test_blur_kernel_wider_than_map(side, sigma):
    rng = np.random.default_rng(1)
    maps = rng.random((1, side, side)).astype(np.float32)

    blurred = gaussian_blur(torch.from_numpy(maps), sigma).numpy()

    np.testing.assert_allclose(blurred, scipy_blur(maps, sigma), atol=1e-5)


def test_blur_keeps_constant_wide_kernel():
    maps = torch.ones(1, 32, 32)

    blurred = gaussian_blur(maps, 10.0)

    np.testing.assert_allclose(blurred.numpy(), 1.0, atol=1e-5)


def test_blur_zero_sigma_is_identity():
    maps = torch.rand(1, 16, 16)

    blurred = gaussian_blur(maps, 0.0)

    assert torch.equal(blurred, maps)


def test_anomaly_maps_shape():
    patch_scores = torch.rand(3, 8, 12)

    maps = anomaly_maps(patch_scores, (64, 96), sigma=4.0)

    assert maps.shape == (3, 64, 96)


def test_anomaly_maps_keep_constant():
    patch_scores = torch.full((2, 8, 8), 2.5)

    maps = anomaly_maps(patch_scores, (64, 64), sigma=4.0)

    np.testing.assert_allclose(maps.numpy(), 2.5, rtol=1e-6)


def test_anomaly_maps_place_hot_patch():
    patch_scores = torch.zeros(1, 8, 8)
    patch_scores[0, 1, 6] = 1.0  # row 1, column 6 of the 8 x 8 grid

    maps = anomaly_maps(patch_scores, (64, 64), sigma=2.0)

    row, column = np.unravel_index(int(maps[0].argmax()), (64, 64))
    assert row // 8 == 1
    assert column // 8 == 6


@pytest.mark.parametrize("size", [(512, 512), (300, 450), (17, 9)])
def test_resize_map_shape(size):
    working = np.random.default_rng(2).random((256, 256)).astype(np.float32)

    resized = resize_map(working, size)

    assert resized.shape == size
    assert resized.dtype == np.float32


def test_resize_map_keeps_constant():
    working = np.full((64, 64), 0.75, dtype=np.float64)

    resized = resize_map(working, (100, 37))

    np.testing.assert_allclose(resized, 0.75, rtol=1e-6)


def test_resize_map_same_size():
    working = np.random.default_rng(3).random((40, 30))

    resized = resize_map(working, (40, 30))

    assert resized.dtype == np.float32
    np.testing.assert_allclose(resized, working, rtol=1e-6)


@pytest.mark.parametrize("size", [(256, 256), (320, 200), (40, 24)])
@pytest.mark.parametrize("sigma", [0.0, 2.0, 4.0])
def test_anomaly_maps_equal_direct_upsample_and_blur(size, sigma):
    patch_scores = 10.0 * torch.rand(
        3, 32, 25, generator=torch.Generator().manual_seed(0)
    )

    fast = anomaly_maps(patch_scores, size, sigma)
    direct = upsample_and_blur(patch_scores, size, sigma)

    assert fast.shape == (3, *size)
    torch.testing.assert_close(fast, direct, rtol=0, atol=1e-4)
