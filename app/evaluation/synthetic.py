"""Synthetic defects on good training images, to test a label-free choice of λ.

A fit has no defective images, so it could only choose λ itself from defects
it makes. This module makes them by cut and paste (the CutPaste
augmentation). A rectangle covering 0.5 to 3 % of the image, with an aspect
ratio of 0.3 to 3.3, is copied from another place of the same image and its
brightness scaled by 0.8 to 1.2. Each cross-fitted calibration image gets one
and is scored against the bank without its fold, as its calibration map was.
structcore-eval reports the AUROC of good calibration maps against these for
each λ scale, beside the AUROC on the real test split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.engine.fitting import calibration_grids, calibration_images
from app.engine.model import StructCoreModel

AREA_SHARE = (0.005, 0.03)
ASPECT_RATIO = (0.3, 3.3)
BRIGHTNESS = (0.8, 1.2)


def cut_paste(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return a copy of an HxWx3 uint8 image with one pasted rectangle."""
    height, width = image.shape[:2]
    area = rng.uniform(*AREA_SHARE) * height * width
    aspect = np.exp(rng.uniform(*np.log(ASPECT_RATIO)))
    patch_h = int(np.clip(round(np.sqrt(area * aspect)), 1, height - 1))
    patch_w = int(np.clip(round(np.sqrt(area / aspect)), 1, width - 1))
    source_y, target_y = rng.integers(0, height - patch_h, size=2)
    source_x, target_x = rng.integers(0, width - patch_w, size=2)
    patch = image[source_y : source_y + patch_h, source_x : source_x + patch_w]
    scaled = patch.astype(np.float32) * rng.uniform(*BRIGHTNESS)
    altered = image.copy()
    altered[target_y : target_y + patch_h, target_x : target_x + patch_w] = np.clip(
        scaled, 0, 255
    ).astype(np.uint8)
    return altered


def synthetic_defect_grids(
    model: StructCoreModel, train: Sequence[np.ndarray]
) -> np.ndarray:
    """Return the patch-score grids of one altered copy of each calibration image.

    `model` must be fitted with keep_artifacts on `train`, so that each copy
    is scored against the same bank as its source image's calibration map.
    """
    config = model.config
    artifacts = model.fit_artifacts
    if artifacts is None:
        raise ValueError(
            "model.fit_artifacts is missing; fit the model with keep_artifacts=True"
        )
    chosen = calibration_images(len(train), config.calibration_images, config.seed)
    rng = np.random.default_rng(config.seed)
    altered = [cut_paste(train[i], rng) for i in chosen]
    features = np.concatenate(
        [
            model.patch_features(altered[start : start + config.batch_size])
            .permute(0, 2, 3, 1)
            .cpu()
            .numpy()
            for start in range(0, len(altered), config.batch_size)
        ]
    )
    return calibration_grids(
        artifacts["grid"],
        model.bank,
        artifacts["coreset_rows"],
        config,
        queries=features,
    )
