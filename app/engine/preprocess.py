"""Resizing decoded images to the working resolution the backbone reads."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from app.engine.config import MAX_SIDE, EngineConfig

# The longer side of a working resolution set at fit is a multiple of this
# (the coarsest feature stride) and at most this many times the shorter one.
_SIDE_STEP = 16
_MAX_ASPECT = 4.0


def working_size(shapes: Sequence[tuple[int, ...]], short_side: int) -> tuple[int, int]:
    """Return the working (height, width) for images of these shapes.

    The shorter side is short_side. The longer one follows the median aspect
    ratio of the images, rounded to a multiple of 16 and capped at 4 times
    the shorter and at 2048 pixels, so that a product photographed at 3:2 is
    not squeezed into a square. VisA's 1500x1000 images get 256x384, and
    square ones 256x256.
    """
    if not shapes:
        raise ValueError("working_size needs at least one image shape")
    aspect = float(np.median([width / height for height, width, *_ in shapes]))
    ratio = min(max(aspect, 1.0 / aspect), _MAX_ASPECT)
    steps = round(short_side * ratio / _SIDE_STEP)
    longer = min(max(short_side, steps * _SIDE_STEP), MAX_SIDE)
    return (short_side, longer) if aspect >= 1.0 else (longer, short_side)


def resolve_working_size(
    config: EngineConfig, images: Sequence[np.ndarray]
) -> EngineConfig:
    """Return config with image_size set from the images, if it is unset."""
    if config.image_size is not None:
        return config
    size = working_size([image.shape for image in images], config.short_side)
    return config.replace(image_size=size)


def prepare_image(image: np.ndarray, config: EngineConfig) -> np.ndarray:
    """Resize an HxWx3 uint8 image to the working resolution, then crop.

    The whole frame is resized to config.image_size, so that nothing at the
    border is lost. An image whose aspect ratio differs from it is stretched.
    Pillow's bilinear filter low-passes when it shrinks.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        msg = f"expected an HxWx3 uint8 RGB array, got {image.dtype} {image.shape}"
        raise ValueError(msg)
    if config.image_size is None:
        msg = (
            "config.image_size is not set; resolve_working_size sets it from "
            "the training images"
        )
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
