"""Tests for app.engine.render."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.engine.render import JET_LUT, anomaly_map_png, overlay_png

MAP_RANGE = (0.1, 0.3)


def read_png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image


def decode_levels(data: bytes) -> np.ndarray:
    return np.array(read_png(data))


def noise_rgb(height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


# anomaly_map_png


def test_map_png_is_grayscale_of_map_size():
    anomaly_map = np.zeros((12, 20), dtype=np.float32)
    image = read_png(anomaly_map_png(anomaly_map, MAP_RANGE))
    assert image.mode == "L"
    assert image.size == (20, 12)


def test_map_png_fixed_scale_levels():
    values = [0.0, 0.1, 0.2, 0.3, 5.0]
    anomaly_map = np.array([values], dtype=np.float32)
    levels = decode_levels(anomaly_map_png(anomaly_map, MAP_RANGE))[0]
    assert levels[0] == 0, "below low is black"
    assert levels[1] == 0, "low is black"
    assert abs(int(levels[2]) - 128) <= 1, "midpoint is mid gray"
    assert levels[3] == 255, "high is white"
    assert levels[4] == 255, "above high is white"


def test_map_png_linear_between_bounds():
    anomaly_map = np.linspace(0.0, 1.0, 256, dtype=np.float32)[np.newaxis, :]
    levels = decode_levels(anomaly_map_png(anomaly_map, (0.0, 1.0)))[0]
    np.testing.assert_array_equal(levels, np.arange(256, dtype=np.uint8))


def test_map_png_keeps_absolute_levels():
    # Each map is constant, so per-image min-max scaling would give the same
    # image for both. A fixed scale keeps them apart.
    good = np.full((8, 8), 0.15, dtype=np.float32)
    defect = np.full((8, 8), 0.25, dtype=np.float32)
    good_levels = decode_levels(anomaly_map_png(good, MAP_RANGE))
    defect_levels = decode_levels(anomaly_map_png(defect, MAP_RANGE))
    assert np.all(np.abs(good_levels.astype(int) - 64) <= 1)
    assert np.all(np.abs(defect_levels.astype(int) - 191) <= 1)


def test_map_png_good_part_stays_dark():
    # A map whose values all sit below the range renders black, even though
    # its own values vary.
    anomaly_map = np.linspace(0.0, 0.09, 64, dtype=np.float32).reshape(8, 8)
    levels = decode_levels(anomaly_map_png(anomaly_map, MAP_RANGE))
    assert levels.max() == 0


def test_map_png_infinite_values_clipped():
    anomaly_map = np.array([[-np.inf, np.inf]], dtype=np.float32)
    levels = decode_levels(anomaly_map_png(anomaly_map, MAP_RANGE))[0]
    assert levels.tolist() == [0, 255]


def test_map_png_accepts_float64():
    anomaly_map = np.array([[0.1, 0.3]], dtype=np.float64)
    levels = decode_levels(anomaly_map_png(anomaly_map, MAP_RANGE))[0]
    assert levels.tolist() == [0, 255]


@pytest.mark.parametrize(
    "map_range",
    [(0.3, 0.1), (0.2, 0.2), (0.0, float("nan")), (float("-inf"), 1.0)],
)
def test_map_png_invalid_range_rejected(map_range):
    anomaly_map = np.zeros((4, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="map_range"):
        anomaly_map_png(anomaly_map, map_range)


@pytest.mark.parametrize("shape", [(16,), (4, 4, 1), (2, 4, 4)])
def test_map_png_non_2d_map_rejected(shape):
    anomaly_map = np.zeros(shape, dtype=np.float32)
    with pytest.raises(ValueError, match="2-D"):
        anomaly_map_png(anomaly_map, MAP_RANGE)


def test_map_png_nan_rejected():
    anomaly_map = np.array([[0.1, np.nan]], dtype=np.float32)
    with pytest.raises(ValueError, match="NaN"):
        anomaly_map_png(anomaly_map, MAP_RANGE)


# Colour table


def test_jet_lut_shape_and_ends():
    assert JET_LUT.shape == (256, 3)
    assert JET_LUT.dtype == np.uint8
    assert JET_LUT[0].tolist() == [0, 0, 128], "jet starts dark blue"
    assert JET_LUT[255].tolist() == [128, 0, 0], "jet ends dark red"


def test_jet_lut_middle_is_green():
    red, green, blue = JET_LUT[128].tolist()
    assert green == 255
    assert 100 <= red <= 150
    assert 100 <= blue <= 150


# overlay_png


def test_overlay_is_rgb_of_image_size():
    image_rgb = noise_rgb(12, 20)
    anomaly_map = np.zeros((12, 20), dtype=np.float32)
    image = read_png(overlay_png(image_rgb, anomaly_map, MAP_RANGE))
    assert image.mode == "RGB"
    assert image.size == (20, 12)


def test_overlay_alpha_zero_returns_image():
    image_rgb = noise_rgb(12, 20)
    anomaly_map = np.full((12, 20), 0.3, dtype=np.float32)
    result = decode_levels(overlay_png(image_rgb, anomaly_map, MAP_RANGE, alpha=0.0))
    np.testing.assert_array_equal(result, image_rgb)


def test_overlay_alpha_one_returns_colours():
    image_rgb = noise_rgb(2, 3)
    anomaly_map = np.array([[0.0, 0.2, 0.3], [0.3, 0.2, 0.0]], dtype=np.float32)
    result = decode_levels(overlay_png(image_rgb, anomaly_map, MAP_RANGE, alpha=1.0))
    np.testing.assert_array_equal(result[0, 0], JET_LUT[0])
    np.testing.assert_array_equal(result[0, 2], JET_LUT[255])
    np.testing.assert_array_equal(result[1, 0], JET_LUT[255])


def test_overlay_blends_with_alpha():
    image_rgb = np.full((1, 2, 3), 200, dtype=np.uint8)
    anomaly_map = np.array([[0.0, 0.3]], dtype=np.float32)
    result = decode_levels(overlay_png(image_rgb, anomaly_map, MAP_RANGE, alpha=0.5))
    expected = np.rint(0.5 * 200 + 0.5 * JET_LUT[[0, 255]].astype(float))
    np.testing.assert_array_equal(result[0], expected.astype(np.uint8))


def test_overlay_shape_mismatch_rejected():
    image_rgb = noise_rgb(12, 20)
    anomaly_map = np.zeros((20, 12), dtype=np.float32)
    with pytest.raises(ValueError, match="does not match"):
        overlay_png(image_rgb, anomaly_map, MAP_RANGE)


@pytest.mark.parametrize(
    "image_rgb",
    [
        np.zeros((12, 20), dtype=np.uint8),
        np.zeros((12, 20, 4), dtype=np.uint8),
        np.zeros((12, 20, 3), dtype=np.float32),
    ],
)
def test_overlay_invalid_image_rejected(image_rgb):
    anomaly_map = np.zeros((12, 20), dtype=np.float32)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        overlay_png(image_rgb, anomaly_map, MAP_RANGE)


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_overlay_alpha_out_of_range_rejected(alpha):
    image_rgb = noise_rgb(4, 4)
    anomaly_map = np.zeros((4, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="alpha"):
        overlay_png(image_rgb, anomaly_map, MAP_RANGE, alpha=alpha)


def test_overlay_invalid_range_rejected():
    image_rgb = noise_rgb(4, 4)
    anomaly_map = np.zeros((4, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="map_range"):
        overlay_png(image_rgb, anomaly_map, (1.0, 0.0))
