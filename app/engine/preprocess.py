"""Resizing decoded images to the working resolution the backbone reads."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from app.engine.config import EngineConfig


def prepare_image(image: np.ndarray, config: EngineConfig) -> np.ndarray:
    """Resize an HxWx3 uint8 image to the working resolution, then crop.

    The whole frame is resized (aspect ratio not kept) so that nothing at the
    border is lost; Pillow's bilinear filter low-passes when it shrinks.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        msg = f"expected an HxWx3 uint8 RGB array, got {image.dtype} {image.shape}"
        raise ValueError(msg)
    height, width = config.image_size
    if image.shape[:2] != (height, width):
        resized = Image.fromarray(image).resize((width, height), Image.BILINEAR)
        image = np.asarray(resized)
    if config.center_crop is not None:
        crop_h, crop_w = config.center_crop
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        image = image[top : top + crop_h, left : left + crop_w]
    return image


def prepare_batch(images: Sequence[np.ndarray], config: EngineConfig) -> np.ndarray:
    """Return a contiguous NHWC uint8 batch at the backbone's input size."""
    return np.ascontiguousarray(np.stack([prepare_image(i, config) for i in images]))
