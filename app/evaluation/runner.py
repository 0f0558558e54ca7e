"""Evaluation of one category: fit, score the test split, compare image scores."""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from app.engine.anomaly_map import anomaly_maps
from app.engine.config import EngineConfig
from app.engine.descriptor import DISTANCE_NORMS, calibrate, structural_descriptor
from app.engine.fitting import calibration_grids, fold_of_images
from app.engine.imageio import decode_image_file
from app.engine.memory_bank import INDEX_TYPES, MemoryBank
from app.engine.model import StructCoreModel
from app.evaluation.datasets import Category
from app.evaluation.metrics import image_auroc, pixel_auroc, pro_score
from app.evaluation.synthetic import synthetic_defect_grids

logger = logging.getLogger(__name__)

# Multipliers of the automatically matched lambda tried in the ablation.
LAMBDA_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)


@dataclass
class _Maps:
    grids: np.ndarray  # (n, h, w) raw patch scores
    maxima: np.ndarray  # (n,) max of the blurred map
    phi: dict[str, np.ndarray]  # descriptor source -> (n, 3)


def _describe(grids: np.ndarray, config: EngineConfig, keep_maps: bool = False):
    maxima, phi_blurred, phi_patch, kept = [], [], [], []
    for start in range(0, len(grids), 32):
        chunk = torch.from_numpy(np.ascontiguousarray(grids[start : start + 32]))
        maps = anomaly_maps(chunk, config.input_size, config.blur_sigma)
        maxima.append(maps.amax(dim=(1, 2)).double().numpy())
        phi_blurred.append(structural_descriptor(maps))
        phi_patch.append(structural_descriptor(chunk))
        if keep_maps:
            kept.append(maps.numpy())
    described = _Maps(
        grids,
        np.concatenate(maxima),
        {"blurred": np.concatenate(phi_blurred), "patch": np.concatenate(phi_patch)},
    )
    return described, (np.concatenate(kept) if keep_maps else None)


def _load_mask(item, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    if item.mask is None:
        return np.zeros(size, dtype=np.uint8)
    mask = Image.open(item.mask).convert("L").resize((width, height), Image.NEAREST)
    return (np.asarray(mask) > 0).astype(np.uint8)


def _crop(mask: np.ndarray, config: EngineConfig) -> np.ndarray:
    if config.center_crop is None:
        return mask
    height, width = config.image_size
    crop_h, crop_w = config.center_crop
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return mask[top : top + crop_h, left : left + crop_w]


def _ablation(labels, test: _Maps, calibrations: dict[str, _Maps]) -> list[dict]:
    rows = []
    for mode, source, norm in itertools.product(
        calibrations, ("blurred", "patch"), DISTANCE_NORMS
    ):
        cal = calibrations[mode]
        fitted = calibrate(cal.phi[source], cal.maxima, norm)
        distances = fitted.distances(test.phi[source])
        row = {
            "calibration": mode,
            "descriptor_map": source,
            "norm": norm,
            "lambda": fitted.structure_weight,
            "auroc_distance": image_auroc(labels, distances),
        }
        for scale in LAMBDA_SCALES:
            hybrid = test.maxima + scale * fitted.structure_weight * distances
            row[f"auroc_hybrid_x{scale:g}"] = image_auroc(labels, hybrid)
        rows.append(row)
    return rows


def evaluate_category(
    category: Category, config: EngineConfig, max_train: int | None = None
) -> dict:
    """Fit on the category's good training images and score its test split."""
    train_paths = category.train[:max_train] if max_train else category.train
    started = time.perf_counter()
    train = [decode_image_file(p) for p in tqdm(train_paths, desc="decode train")]
    decode_seconds = time.perf_counter() - started

    with tqdm(total=100, desc=f"fit {category.name}") as bar:

        def progress(stage: str, fraction: float) -> None:
            bar.set_postfix_str(stage)
            bar.update(round(fraction * 100) - bar.n)

        started = time.perf_counter()
        model = StructCoreModel.fit(
            train, config, progress=progress, keep_artifacts=True
        )
        fit_seconds = time.perf_counter() - started
    config = model.config  # with the working resolution the fit set

    labels = np.array([item.label for item in category.test])
    grids, scores, features, elapsed = [], [], [], 0.0
    for start in tqdm(range(0, len(category.test), 8), desc="score test"):
        images = [decode_image_file(i.path) for i in category.test[start : start + 8]]
        began = time.perf_counter()
        batch = model.patch_features(images)
        grid = model.grid_from_features(batch)
        results = model.results_from_grid(grid, images)
        elapsed += time.perf_counter() - began
        grids.append(grid.numpy())
        scores.extend(r.image_score for r in results)
        features.append(batch.permute(0, 2, 3, 1).numpy())
    test, maps = _describe(np.concatenate(grids), config, keep_maps=True)

    artifacts = model.fit_artifacts
    calibrations = {}
    for mode in ("naive", "crossfit"):
        cal_grids = calibration_grids(
            artifacts["grid"], model.bank, artifacts["coreset_rows"], config, mode
        )
        calibrations[mode] = _describe(cal_grids, config)[0]

    masks = np.stack(
        [_crop(_load_mask(i, config.image_size), config) for i in category.test]
    )
    features = np.concatenate(features)
    search = _search_ablation(model, features, test, labels, masks)
    held_out = _held_out_descriptor(model, features, test, labels)
    synthetic = _synthetic_lambda(
        _describe(synthetic_defect_grids(model, train), config)[0],
        calibrations["crossfit"],
        test,
        labels,
        config.descriptor_map,
    )
    good = labels == 0
    top_index = DESCRIPTOR_INDEX["top1_mean"]
    return {
        "category": category.name,
        "layout": category.layout,
        "num_train": len(train),
        "image_size": list(config.image_size),
        "num_test": len(labels),
        "num_defective": int(labels.sum()),
        "bank_size": len(model.bank),
        "fit_seconds": fit_seconds,
        "fit_stage_seconds": model.info["fit_seconds"],
        "decode_seconds": decode_seconds,
        "ms_per_image": 1000.0 * elapsed / len(labels),
        "image_auroc": {
            "default": image_auroc(labels, scores),
            "max": image_auroc(labels, test.maxima),
            "top1_mean": image_auroc(labels, test.phi["blurred"][:, top_index]),
        },
        "pixel_auroc": pixel_auroc(masks, maps),
        "pro": pro_score(masks, maps),
        "calibration_bias": {
            "good_test_max_mean": float(test.maxima[good].mean()),
            **{
                f"{m}_max_mean": float(c.maxima.mean()) for m, c in calibrations.items()
            },
        },
        "threshold": model.threshold,
        "false_reject_rate_on_good_test": float(
            np.mean(np.array(scores)[good] > model.threshold)
        ),
        "ablation": _ablation(labels, test, calibrations),
        "search_ablation": search,
        "held_out_descriptor": held_out,
        "synthetic_lambda": synthetic,
        # Per-image values, so that other image scores can be compared later
        # without fitting again.
        "per_image": {
            "paths": [str(item.path) for item in category.test],
            "labels": labels.tolist(),
            "default_score": [float(v) for v in scores],
            **_per_image(test),
        },
        "calibration_per_image": {m: _per_image(c) for m, c in calibrations.items()},
    }


def _per_image(described: _Maps) -> dict:
    return {
        "max_score": described.maxima.tolist(),
        **{f"phi_{source}": phi.tolist() for source, phi in described.phi.items()},
    }


def _held_out_descriptor(
    model: StructCoreModel, features: np.ndarray, test: _Maps, labels: np.ndarray
) -> dict | None:
    """Read the descriptor of test images from leave-one-fold-out scores.

    A calibration map scores a fold's image against the bank without that
    fold, which has (K-1)/K of the rows, so its maps are rougher than those of
    test images scored against the whole bank. Two test-side analogues:
    "mean" gives each patch the mean of its K leave-one-fold-out distances,
    ((K-1) * d1 + d2) / K, where d1 is its nearest-row distance and d2 the
    nearest among the other folds than d1's. Its expectation per patch equals
    a calibration map's, but averaging smooths the map. "without_last_fold"
    scores every test image against the bank without the last fold, as a
    calibration map is scored. The max score stays that of the usual map.
    Only for k = 1 and cross-fitted models.
    """
    config = model.config
    artifacts = model.fit_artifacts
    if config.num_neighbors != 1 or config.calibration != "crossfit":
        return None
    count, height, width, channels = features.shape
    image_count = artifacts["grid"].shape[0]
    folds = min(config.crossfit_folds, image_count)
    if folds < 2:
        return None
    fold = fold_of_images(image_count, folds, config.seed)
    bank_fold = fold[artifacts["coreset_rows"] // (height * width)]
    rows = features.reshape(-1, channels)
    per_fold = np.stack(
        [
            MemoryBank(model.bank.features[bank_fold == f], "flat", 1).patch_scores(
                rows
            )
            for f in range(folds)
        ],
        axis=1,
    )
    nearest = np.sort(per_fold, axis=1)
    variants = {
        "mean": ((folds - 1) * nearest[:, 0] + nearest[:, 1]) / folds,
        # One leave-one-fold-out bank for every image: that of the last fold.
        "without_last_fold": per_fold[:, :-1].min(axis=1),
    }
    good = labels == 0
    result = {
        "usual_good_test_z_mean": model.calibration.z_scores(
            test.phi[config.descriptor_map]
        )[good]
        .mean(axis=0)
        .tolist()
    }
    for name, scores in variants.items():
        grids = scores.astype(np.float32).reshape(count, height, width)
        phi = _describe(grids, config)[0].phi[config.descriptor_map]
        distances = model.calibration.distances(phi)
        hybrid = test.maxima + model.calibration.structure_weight * distances
        z_mean = model.calibration.z_scores(phi)[good].mean(axis=0)
        result[name] = {
            "auroc_distance": image_auroc(labels, distances),
            "auroc_hybrid": image_auroc(labels, hybrid),
            "good_test_z_mean": z_mean.tolist(),
        }
    return result


def _synthetic_lambda(
    synthetic: _Maps, calibration: _Maps, test: _Maps, labels: np.ndarray, source: str
) -> list[dict]:
    """Return the AUROC of each λ scale on synthetic defects and on the test split.

    The synthetic AUROC compares the cross-fitted calibration maps of good
    training images with CutPaste copies of the same images, scored against
    the same banks (app.evaluation.synthetic). It needs no test label, so a
    fit could choose λ by it; the test AUROC shows whether that choice holds.
    """
    is_synthetic = np.r_[
        np.zeros(len(calibration.maxima)), np.ones(len(synthetic.maxima))
    ]
    rows = []
    for norm in DISTANCE_NORMS:
        fitted = calibrate(calibration.phi[source], calibration.maxima, norm)
        good = fitted.distances(calibration.phi[source])
        altered = fitted.distances(synthetic.phi[source])
        real = fitted.distances(test.phi[source])
        row = {"norm": norm, "lambda": fitted.structure_weight}
        for scale in (0.0, *LAMBDA_SCALES):
            weight = scale * fitted.structure_weight
            row[f"synthetic_x{scale:g}"] = image_auroc(
                is_synthetic,
                np.r_[
                    calibration.maxima + weight * good,
                    synthetic.maxima + weight * altered,
                ],
            )
            row[f"test_x{scale:g}"] = image_auroc(labels, test.maxima + weight * real)
        rows.append(row)
    return rows


def _search_ablation(
    model: StructCoreModel,
    features: np.ndarray,
    exact: _Maps,
    labels: np.ndarray,
    masks: np.ndarray,
) -> list[dict]:
    """Score the test patches again with each bank index over the same bank.

    The coreset, calibration and threshold stay those of the fit, as they
    would be had the model been fitted with that index type, since
    calibration always searches exactly. `features` is (n, h, w, C).
    """
    count, height, width, channels = features.shape
    rows = features.reshape(-1, channels)
    config = model.config
    variants = []
    for index_type in INDEX_TYPES:
        bank = MemoryBank(model.bank.features, index_type, config.num_neighbors)
        if bank.index_type != index_type:
            continue  # the bank is too small for this index and fell back to flat
        began = time.perf_counter()
        patch = bank.patch_scores(rows).astype(np.float32)
        search_ms = 1000.0 * (time.perf_counter() - began) / count
        test, maps = _describe(patch.reshape(count, height, width), config, True)
        phi = test.phi[config.descriptor_map]
        hybrid = model.calibration.image_scores(test.maxima, phi)
        relative = (patch - exact.grids.ravel()) / np.maximum(exact.grids.ravel(), 1e-6)
        variants.append(
            {
                "index_type": bank.index_type,
                "search_ms_per_image": search_ms,
                "image_auroc_default": image_auroc(labels, hybrid),
                "image_auroc_max": image_auroc(labels, test.maxima),
                "pixel_auroc": pixel_auroc(masks, maps),
                "patches_over_1pct_above_exact": float(np.mean(relative > 0.01)),
            }
        )
    return variants


DESCRIPTOR_INDEX = {"std": 0, "top1_mean": 1, "total_variation": 2}
