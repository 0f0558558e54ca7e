"""End-to-end tests of app.engine.model.StructCoreModel on real images.

One default model is fitted per module on the first 30 MVTec AD bottle
training images and scored on 10 good and 10 defective test images
(broken_large and contamination). The other variants use 128 x 128 working
images so that the whole module stays fast on a CPU.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from app.engine.config import EngineConfig
from app.engine.descriptor import DESCRIPTOR_NAMES
from app.engine.imageio import decode_image_file
from app.engine.model import (
    MIN_TRAIN_IMAGES,
    FitCancelledError,
    InsufficientSamplesError,
    StructCoreModel,
)

TRAIN_COUNT = 30
GOOD_COUNT = 10
# Defective images per defect type.
DEFECT_COUNT = 5
DEFECT_TYPES = ("broken_large", "contamination")

SMALL_CONFIG = EngineConfig(image_size=(128, 128), center_crop=(112, 112))
SMALL_TRAIN_COUNT = 12

STAGES = ("features", "coreset", "calibration")


def read_images(folder: Path, count: int) -> list[np.ndarray]:
    """Decode the first `count` images of `folder` in sorted name order."""
    return [decode_image_file(path) for path in sorted(folder.iterdir())[:count]]


@pytest.fixture(scope="module")
def bottle(mvtec_bottle: Path) -> dict[str, list[np.ndarray]]:
    """Training, good test and defective test images of MVTec AD bottle."""
    defective = []
    for defect in DEFECT_TYPES:
        defective += read_images(mvtec_bottle / "test" / defect, DEFECT_COUNT)
    return {
        "train": read_images(mvtec_bottle / "train" / "good", TRAIN_COUNT),
        "good": read_images(mvtec_bottle / "test" / "good", GOOD_COUNT),
        "defective": defective,
    }


@pytest.fixture(scope="module")
def fitted(bottle) -> tuple[StructCoreModel, list[tuple[str, float]]]:
    """The default model and every (stage, fraction) its fit reported."""
    events: list[tuple[str, float]] = []
    model = StructCoreModel.fit(
        bottle["train"],
        EngineConfig(),
        progress=lambda stage, fraction: events.append((stage, fraction)),
        device="cpu",
    )
    return model, events


@pytest.fixture(scope="module")
def model(fitted) -> StructCoreModel:
    return fitted[0]


@pytest.fixture(scope="module")
def results(model, bottle):
    """Score results of the good test images, then the defective ones."""
    return model.score_batch(bottle["good"] + bottle["defective"])


@pytest.fixture(scope="module")
def small_models(bottle) -> dict[str, StructCoreModel]:
    """Cross-fit and naive models on 128 x 128 images with a 112 x 112 crop."""
    train = bottle["train"][:SMALL_TRAIN_COUNT]
    return {
        mode: StructCoreModel.fit(
            train, SMALL_CONFIG.replace(calibration=mode), device="cpu"
        )
        for mode in ("crossfit", "naive")
    }


def image_scores(results) -> np.ndarray:
    return np.array([r.image_score for r in results])


# Detection quality


def test_fit_image_auroc(results):
    labels = [0] * GOOD_COUNT + [1] * (len(DEFECT_TYPES) * DEFECT_COUNT)

    auroc = roc_auc_score(labels, image_scores(results))

    assert auroc >= 0.9


def test_fit_defective_scores_higher(results):
    scores = image_scores(results)

    assert scores[GOOD_COUNT:].mean() > scores[:GOOD_COUNT].mean()


# Score results


def test_score_map_has_image_shape(results, bottle):
    images = bottle["good"] + bottle["defective"]

    for result, image in zip(results, images, strict=True):
        assert result.anomaly_map.shape == image.shape[:2]
        assert result.anomaly_map.dtype == np.float32


def test_score_fields_finite(results):
    for result in results:
        assert math.isfinite(result.image_score)
        assert math.isfinite(result.max_score)
        assert math.isfinite(result.structural_distance)
        assert math.isfinite(result.threshold)
        assert set(result.descriptor) == set(DESCRIPTOR_NAMES)
        assert set(result.z_scores) == set(DESCRIPTOR_NAMES)
        assert all(math.isfinite(v) for v in result.descriptor.values())
        assert all(math.isfinite(v) for v in result.z_scores.values())
        assert np.isfinite(result.anomaly_map).all()


def test_score_combines_max_and_distance(model, results):
    weight = model.calibration.structure_weight

    for result in results:
        expected = result.max_score + weight * result.structural_distance
        assert result.image_score == pytest.approx(expected, rel=1e-9)
        assert result.is_anomalous == (result.image_score > result.threshold)


def test_score_map_within_max_score(results):
    # max_score is the maximum of the 256 x 256 working map, and bilinear
    # upsampling to 512 x 512 interpolates, so it cannot exceed it.
    for result in results:
        assert result.anomaly_map.max() <= result.max_score + 1e-4


def test_score_matches_batch(model, bottle, results):
    single = model.score(bottle["defective"][0])

    assert single.image_score == pytest.approx(
        results[GOOD_COUNT].image_score, rel=1e-5
    )


def test_score_result_dict_without_map(results):
    data = results[0].to_dict()

    assert "anomaly_map" not in data
    json.dumps(data)


# Threshold and normality


def test_threshold_from_rate(model):
    rate = model.config.target_false_reject_rate

    expected = StructCoreModel.threshold_for_rate(model.calibration_scores, rate)

    assert model.threshold == expected
    # 1 % of 30 calibration images is 0.3, so no good image may exceed it.
    assert len(model.calibration_scores) == TRAIN_COUNT
    assert model.threshold == model.calibration_scores.max()


@pytest.mark.parametrize(("rate", "expected"), [(0.0, 10.0), (0.1, 9.0), (0.25, 8.0)])
def test_threshold_for_rate_by_hand(rate, expected):
    scores = np.array([3.0, 1.0, 10.0, 2.0, 9.0, 4.0, 8.0, 5.0, 7.0, 6.0])

    assert StructCoreModel.threshold_for_rate(scores, rate) == expected


def test_normality_in_unit_range(results):
    for result in results:
        assert 0.0 <= result.normality <= 1.0


def test_normality_extremes(model):
    scores = model.calibration_scores

    assert model.normality(scores.min()) == 0.0
    assert model.normality(scores.max() + 1.0) == 1.0
    # Half of the sorted calibration scores lie below the 16th of 30.
    assert model.normality(scores[15]) == pytest.approx(15 / 30)


def test_with_threshold_manual(model, bottle, results):
    image = bottle["defective"][0]
    score = results[GOOD_COUNT].image_score

    above = model.with_threshold(threshold=score + 1.0)
    below = model.with_threshold(threshold=score - 1.0)

    assert above.threshold == score + 1.0
    assert not above.score(image).is_anomalous
    assert below.score(image).is_anomalous
    assert below.summary()["threshold_source"] == "manual"
    assert model.threshold != above.threshold


def test_with_index_type_keeps_scores(model, bottle, results):
    images = bottle["good"] + bottle["defective"]

    fast = model.with_index_type("ivfflat")
    scored = fast.score_batch(images)

    assert fast.config.index_type == "ivfflat"
    assert fast.threshold == model.threshold
    assert len(fast.bank) == len(model.bank)
    exact = np.array([r.image_score for r in results])
    approximate = np.array([r.image_score for r in scored])
    # A patch whose neighbour is in an unprobed list only scores higher. That
    # happens most to far-off patches, so defective images move the most.
    assert np.all(approximate >= exact - 1e-4)
    np.testing.assert_allclose(approximate[:GOOD_COUNT], exact[:GOOD_COUNT], rtol=0.02)
    np.testing.assert_allclose(approximate, exact, rtol=0.1)


def test_with_threshold_rate(model):
    changed = model.with_threshold(target_false_reject_rate=0.5)

    scores = model.calibration_scores
    assert changed.threshold == StructCoreModel.threshold_for_rate(scores, 0.5)
    assert changed.config.target_false_reject_rate == 0.5
    # 15 of 30 calibration images may exceed a 50 % rate, none the default 1 %.
    assert (scores > changed.threshold).sum() == 15
    assert changed.threshold < model.threshold
    assert changed.bank is model.bank


@pytest.mark.parametrize(
    "arguments",
    [
        {},
        {"threshold": 1.0, "target_false_reject_rate": 0.1},
        {"threshold": float("nan")},
        {"threshold": float("inf")},
        {"target_false_reject_rate": 0.9},
        {"target_false_reject_rate": -0.1},
    ],
)
def test_with_threshold_invalid(model, arguments):
    with pytest.raises(ValueError):
        model.with_threshold(**arguments)


# Persistence


def test_save_load_round_trip(model, bottle, tmp_path):
    images = [bottle["good"][0], bottle["defective"][0], bottle["defective"][-1]]
    before = model.score_batch(images)

    model.save(tmp_path)
    loaded = StructCoreModel.load(tmp_path, device="cpu")
    after = loaded.score_batch(images)

    assert loaded.threshold == model.threshold
    assert loaded.config == model.config
    for old, new in zip(before, after, strict=True):
        assert new.image_score == pytest.approx(old.image_score, abs=1e-6)
        np.testing.assert_allclose(new.anomaly_map, old.anomaly_map, atol=1e-6)


def test_summary_is_json(model):
    summary = json.loads(json.dumps(model.summary()))

    # 10 % of 30 images x 32 x 32 patches.
    assert summary["bank_size"] == math.ceil(0.1 * TRAIN_COUNT * 32 * 32)
    assert summary["num_train_images"] == TRAIN_COUNT
    assert summary["backbone"]["name"] == "tf_efficientnet_lite0"


# Fit progress and cancellation


def test_fit_progress_stages(fitted):
    _, events = fitted

    stages = [stage for stage, _ in events]
    first_seen = sorted(set(stages), key=stages.index)
    assert first_seen == list(STAGES)


def test_fit_progress_fractions(fitted):
    _, events = fitted

    fractions = [fraction for _, fraction in events]
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert fractions == sorted(fractions)
    assert fractions[-1] > fractions[0]


def test_fit_too_few_images(bottle):
    images = bottle["train"][: MIN_TRAIN_IMAGES - 1]

    with pytest.raises(InsufficientSamplesError) as error:
        StructCoreModel.fit(images, SMALL_CONFIG, device="cpu")

    assert error.value.minimum == MIN_TRAIN_IMAGES
    assert error.value.count == MIN_TRAIN_IMAGES - 1


def test_fit_should_stop(bottle):
    images = bottle["train"][:MIN_TRAIN_IMAGES]

    with pytest.raises(FitCancelledError):
        StructCoreModel.fit(
            images, SMALL_CONFIG, should_stop=lambda: True, device="cpu"
        )


def test_fit_stop_during_coreset(bottle):
    images = bottle["train"][:MIN_TRAIN_IMAGES]
    stages: list[str] = []

    with pytest.raises(FitCancelledError, match="coreset"):
        StructCoreModel.fit(
            images,
            SMALL_CONFIG,
            progress=lambda stage, fraction: stages.append(stage),
            should_stop=lambda: "coreset" in stages,
            device="cpu",
        )


# Other images and configurations


def test_score_non_square_image(model, magnetic_tile_folder):
    path = sorted((magnetic_tile_folder / "test" / "good").iterdir())[0]
    image = decode_image_file(path)

    result = model.score(image)

    assert image.shape[0] != image.shape[1]
    assert result.anomaly_map.shape == image.shape[:2]
    assert math.isfinite(result.image_score)


def test_fit_keeps_the_aspect_ratio(magnetic_tile_folder):
    # Magnetic tile images have many sizes, so the fit takes their median
    # aspect ratio.
    paths = sorted((magnetic_tile_folder / "train" / "good").iterdir())
    train = [decode_image_file(path) for path in paths[:SMALL_TRAIN_COUNT]]
    aspect = np.median([image.shape[1] / image.shape[0] for image in train])

    model = StructCoreModel.fit(train, EngineConfig(short_side=64), device="cpu")
    height, width = model.config.image_size

    assert min(height, width) == 64
    assert width / height == pytest.approx(aspect, abs=16 / 64)
    assert (width > height) == (aspect > 1)
    result = model.score(train[0])
    assert result.anomaly_map.shape == train[0].shape[:2]


def test_square_images_fit_at_256(model):
    assert model.config.image_size == (256, 256)


def test_crop_map_has_image_shape(small_models, bottle):
    image = bottle["defective"][0]

    result = small_models["crossfit"].score(image)

    assert result.anomaly_map.shape == image.shape[:2]
    assert math.isfinite(result.image_score)


def test_naive_calibration_fits(small_models):
    naive = small_models["naive"]

    assert naive.config.calibration == "naive"
    assert math.isfinite(naive.threshold)
    assert np.isfinite(naive.calibration_scores).all()
    assert len(naive.calibration_scores) == SMALL_TRAIN_COUNT


def test_naive_calibration_scores_lower(small_models):
    # The naive bank contains each calibration image's own patches.
    naive = small_models["naive"].info["calibration_max_score_mean"]
    crossfit = small_models["crossfit"].info["calibration_max_score_mean"]

    assert naive < crossfit
