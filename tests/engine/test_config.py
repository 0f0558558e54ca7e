"""Tests for app.engine.config.EngineConfig: defaults, JSON round trip, checks."""

from __future__ import annotations

import json

import pytest

from app.engine.config import EngineConfig


def test_config_defaults():
    config = EngineConfig()

    assert config.backbone == "tf_efficientnet_lite0"
    assert config.weights_path is None
    assert config.image_size is None
    assert config.short_side == 256
    assert config.center_crop is None
    assert config.coreset_ratio == 0.1
    assert config.num_neighbors == 1
    assert config.index_type == "flat"
    assert config.blur_sigma == 4.0
    assert config.calibration_images == 200
    assert config.descriptor_map == "patch"
    assert config.distance_norm == "l2"
    assert config.calibration == "crossfit"
    assert config.structure_weight is None
    assert config.target_false_reject_rate == 0.01


def test_config_json_round_trip():
    config = EngineConfig(
        image_size=(320, 288),
        center_crop=(224, 256),
        coreset_ratio=0.25,
        num_neighbors=3,
        index_type="ivfpq",
        distance_norm="linf_upper",
        calibration="naive",
        structure_weight=0.5,
        seed=7,
    )

    restored = EngineConfig.from_dict(json.loads(json.dumps(config.to_dict())))

    assert restored == config
    assert restored.image_size == (320, 288)
    assert restored.center_crop == (224, 256)
    assert restored.input_size == (224, 256)


def test_config_input_size_needs_image_size():
    with pytest.raises(ValueError, match="image_size is not set"):
        _ = EngineConfig().input_size


def test_config_crop_must_fit_short_side():
    with pytest.raises(ValueError, match="short_side"):
        EngineConfig(short_side=128, center_crop=224)

    assert EngineConfig(short_side=256, center_crop=224).center_crop == (224, 224)


def test_config_default_round_trip():
    config = EngineConfig()

    assert EngineConfig.from_dict(config.to_dict()) == config


def test_config_int_size_is_square():
    config = EngineConfig(image_size=128, center_crop=112)

    assert config.image_size == (128, 128)
    assert config.center_crop == (112, 112)


def test_config_unknown_key():
    data = {**EngineConfig().to_dict(), "colour_space": "rgb"}

    with pytest.raises(ValueError, match="colour_space"):
        EngineConfig.from_dict(data)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"coreset_ratio": 0.0}, "coreset_ratio"),
        ({"coreset_ratio": 1.5}, "coreset_ratio"),
        ({"image_size": (10, 10)}, "image_size"),
        ({"image_size": 10}, "image_size"),
        ({"image_size": (256, 4096)}, "image_size"),
        ({"image_size": "large"}, "image_size"),
        ({"short_side": 16}, "short_side"),
        ({"short_side": 4096}, "short_side"),
        ({"short_side": "256"}, "short_side"),
        ({"center_crop": (300, 300)}, "center_crop"),
        ({"image_size": (128, 256), "center_crop": (224, 224)}, "center_crop"),
        ({"distance_norm": "l1"}, "distance_norm"),
        ({"index_type": "hnsw"}, "index_type"),
        ({"calibration": "bootstrap"}, "calibration"),
        ({"descriptor_map": "raw"}, "descriptor_map"),
        ({"target_false_reject_rate": -0.1}, "target_false_reject_rate"),
        ({"target_false_reject_rate": 0.9}, "target_false_reject_rate"),
        ({"num_neighbors": 0}, "num_neighbors"),
        ({"batch_size": 0}, "batch_size"),
        ({"crossfit_folds": 1}, "crossfit_folds"),
        ({"calibration_images": 1}, "calibration_images"),
        ({"blur_sigma": -1.0}, "blur_sigma"),
        ({"structure_weight": -0.5}, "structure_weight"),
    ],
)
def test_config_invalid_value(changes, field):
    with pytest.raises(ValueError, match=field):
        EngineConfig(**changes)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"coreset_ratio": "0.5"}, "coreset_ratio"),
        ({"num_neighbors": "3"}, "num_neighbors"),
    ],
)
def test_config_wrong_type(changes, field):
    with pytest.raises(ValueError, match=field):
        EngineConfig(**changes)


def test_config_replace_validates():
    config = EngineConfig()

    with pytest.raises(ValueError, match="coreset_ratio"):
        config.replace(coreset_ratio=2.0)


def test_config_replace_keeps_other_fields():
    config = EngineConfig(image_size=(128, 128), seed=3)

    changed = config.replace(target_false_reject_rate=0.05)

    assert changed.target_false_reject_rate == 0.05
    assert changed.image_size == (128, 128)
    assert changed.seed == 3
    assert config.target_false_reject_rate == 0.01
