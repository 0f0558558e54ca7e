"""PNG rendering of anomaly maps for the HTTP layer.

Maps are drawn on a fixed scale given by `map_range`, never rescaled to each
image's own minimum and maximum. A defect-free part therefore stays dark, and two
images rendered with the same range can be compared level for level.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Fastest zlib level, because a PNG is encoded on every scoring request that
# requests one. Higher levels trade encoding time for smaller files.
PNG_COMPRESS_LEVEL = 1

# Control points of matplotlib's "jet" colormap (lib/matplotlib/_cm.py, _jet_data):
# positions in 0..1 and channel intensities in 0..1, linear in between.
_JET_CONTROL_POINTS = {
    "red": ((0.0, 0.35, 0.66, 0.89, 1.0), (0.0, 0.0, 1.0, 1.0, 0.5)),
    "green": ((0.0, 0.125, 0.375, 0.64, 0.91, 1.0), (0.0, 0.0, 1.0, 1.0, 0.0, 0.0)),
    "blue": ((0.0, 0.11, 0.34, 0.65, 1.0), (0.5, 1.0, 1.0, 0.0, 0.0)),
}


def _build_jet_lut() -> np.ndarray:
    """Sample the jet colormap at 256 levels into a (256, 3) uint8 table."""
    levels = np.linspace(0.0, 1.0, 256)
    channels = [
        np.interp(levels, positions, intensities)
        for positions, intensities in _JET_CONTROL_POINTS.values()
    ]
    return np.rint(np.stack(channels, axis=1) * 255.0).astype(np.uint8)


# Row i is the RGB colour of gray level i: dark blue at 0, dark red at 255.
JET_LUT = _build_jet_lut()


def anomaly_map_png(anomaly_map: np.ndarray, map_range: tuple[float, float]) -> bytes:
    """Encode an (H, W) anomaly map as an 8-bit grayscale PNG on a fixed scale.

    A value at or below `map_range[0]` becomes 0, a value at or above
    `map_range[1]` becomes 255, and values in between are mapped linearly and
    rounded.

    Raises:
        ValueError: the map is not 2-D or contains NaN, or the range is not two
            finite numbers with low < high.
    """
    levels = _map_to_levels(anomaly_map, map_range)
    return _encode_png(Image.fromarray(levels))


def overlay_png(
    image_rgb: np.ndarray,
    anomaly_map: np.ndarray,
    map_range: tuple[float, float],
    alpha: float = 0.5,
) -> bytes:
    """Encode the image with the jet-coloured anomaly map blended over it.

    Each output pixel is round((1 - alpha) * image + alpha * colour), where the
    colour is the `JET_LUT` row of the map level computed as in
    `anomaly_map_png`. The PNG is RGB and has the image's size.

    Raises:
        ValueError: the image is not an HxWx3 uint8 array, the map's shape is not
            the image's HxW, alpha is outside 0..1, or the map or range is
            invalid as in `anomaly_map_png`.
    """
    image_rgb = np.asarray(image_rgb)
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        msg = (
            "image must be an HxWx3 uint8 RGB array, got shape "
            f"{image_rgb.shape} and dtype {image_rgb.dtype}"
        )
        raise ValueError(msg)
    if np.shape(anomaly_map) != image_rgb.shape[:2]:
        msg = (
            f"anomaly map shape {np.shape(anomaly_map)} does not match the image "
            f"height and width {image_rgb.shape[:2]}; resize the map to the image"
        )
        raise ValueError(msg)
    if not 0.0 <= alpha <= 1.0:
        msg = f"alpha must be between 0 and 1, got {alpha}"
        raise ValueError(msg)

    colours = JET_LUT[_map_to_levels(anomaly_map, map_range)].astype(np.float32)
    blended = (1.0 - alpha) * image_rgb.astype(np.float32) + alpha * colours
    overlay = np.rint(blended).astype(np.uint8)
    return _encode_png(Image.fromarray(overlay))


def _map_to_levels(
    anomaly_map: np.ndarray, map_range: tuple[float, float]
) -> np.ndarray:
    """Map anomaly values onto gray levels 0..255 with the fixed range."""
    values = np.asarray(anomaly_map, dtype=np.float32)
    if values.ndim != 2:
        msg = f"anomaly map must be 2-D (H, W), got shape {values.shape}"
        raise ValueError(msg)
    if np.isnan(values).any():
        msg = "anomaly map contains NaN values"
        raise ValueError(msg)

    low, high = (float(bound) for bound in map_range)
    if not (np.isfinite(low) and np.isfinite(high)) or high <= low:
        msg = (
            f"map_range must be two finite numbers with low < high, got ({low}, {high})"
        )
        raise ValueError(msg)

    scaled = (np.clip(values, low, high) - low) * (255.0 / (high - low))
    return np.rint(scaled).astype(np.uint8)


def _encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()
