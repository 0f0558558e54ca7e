"""Tests for app.engine.preprocess: the working resolution and resizing."""

from __future__ import annotations

import numpy as np
import pytest

from app.engine.config import EngineConfig
from app.engine.preprocess import prepare_image, resolve_working_size, working_size


@pytest.mark.parametrize(
    ("shapes", "expected"),
    [
        ([(512, 512, 3)], (256, 256)),
        # VisA: 1500 x 1000 pixels, as stored at 512 x 341.
        ([(341, 512, 3), (1000, 1500, 3)], (256, 384)),
        # Portrait: the width is the shorter side.
        ([(600, 400, 3)], (384, 256)),
        # The median aspect ratio, not the mean.
        ([(100, 100, 3), (100, 150, 3), (100, 400, 3)], (256, 384)),
        # A 10:1 strip is capped at 4:1.
        ([(100, 1000, 3)], (256, 1024)),
        # Nearly square rounds to a multiple of 16 no shorter than short_side.
        ([(100, 103, 3)], (256, 256)),
    ],
)
def test_working_size(shapes, expected):
    assert working_size(shapes, 256) == expected


def test_working_size_other_short_side():
    assert working_size([(341, 512, 3)], 320) == (320, 480)


def test_working_size_needs_a_shape():
    with pytest.raises(ValueError, match="at least one"):
        working_size([], 256)


def test_resolve_keeps_an_explicit_size():
    config = EngineConfig(image_size=(128, 160))
    images = [np.zeros((341, 512, 3), np.uint8)]

    assert resolve_working_size(config, images) is config


def test_resolve_sets_the_size_from_images():
    images = [np.zeros((341, 512, 3), np.uint8)] * 3

    resolved = resolve_working_size(EngineConfig(short_side=128), images)

    assert resolved.image_size == (128, 192)
    assert resolved.input_size == (128, 192)


def test_prepare_image_needs_a_working_size():
    image = np.zeros((64, 64, 3), np.uint8)

    with pytest.raises(ValueError, match="image_size is not set"):
        prepare_image(image, EngineConfig())


def test_prepare_image_resizes_and_crops():
    image = np.zeros((341, 512, 3), np.uint8)
    config = EngineConfig(image_size=(128, 192), center_crop=(112, 112))

    assert prepare_image(image, config).shape == (112, 112, 3)
