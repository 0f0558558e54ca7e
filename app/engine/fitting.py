"""The fit pipeline: patch features, coreset, calibration maps, threshold."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict

import numpy as np
import torch

from app.engine import versions
from app.engine.anomaly_map import anomaly_maps
from app.engine.backbone import Backbone
from app.engine.config import EngineConfig
from app.engine.coreset import greedy_coreset
from app.engine.descriptor import calibrate, structural_descriptor
from app.engine.memory_bank import MemoryBank
from app.engine.preprocess import prepare_batch, resolve_working_size

logger = logging.getLogger(__name__)

# Share of the fit's progress bar each stage covers, by measured fit time.
_STAGE_SPANS = {
    "features": (0.0, 0.35),
    "coreset": (0.35, 0.6),
    "calibration": (0.6, 0.98),
}

# Calibration maps are turned into descriptors this many at a time, so memory
# does not grow with the number of training images.
_MAP_CHUNK = 32


class _Reporter:
    def __init__(self, progress, should_stop) -> None:
        self._progress = progress
        self._should_stop = should_stop

    def __call__(self, stage: str, fraction: float) -> None:
        from app.engine.model import FitCancelledError

        if self._should_stop is not None and self._should_stop():
            raise FitCancelledError(f"fit cancelled during {stage}")
        if self._progress is not None:
            low, high = _STAGE_SPANS[stage]
            self._progress(stage, low + (high - low) * min(max(fraction, 0.0), 1.0))


def extract_features(
    images: Sequence[np.ndarray],
    config: EngineConfig,
    backbone: Backbone,
    report: Callable[[str, float], None] | None = None,
) -> np.ndarray:
    """Return patch features as an (n, h, w, C) float32 array."""
    chunks = []
    for start in range(0, len(images), config.batch_size):
        if report is not None:
            report("features", start / len(images))
        batch = prepare_batch(images[start : start + config.batch_size], config)
        features = backbone.patch_features(batch)
        chunks.append(features.permute(0, 2, 3, 1).cpu().numpy())
    return np.ascontiguousarray(np.concatenate(chunks))


def fold_of_images(count: int, folds: int, seed: int) -> np.ndarray:
    """Assign each image to one of `folds` folds of near-equal size."""
    order = np.random.default_rng(seed).permutation(count)
    assignment = np.empty(count, dtype=np.int64)
    assignment[order] = np.arange(count) % folds
    return assignment


def foldwise_coreset(
    grid: np.ndarray,
    config: EngineConfig,
    should_stop: Callable[[], bool] | None = None,
    report: Callable[[str, float], None] | None = None,
) -> np.ndarray:
    """Select the memory bank: a greedy coreset of each fold's patches, joined.

    The images are split into the cross-fit folds and each fold's patches get
    their own coreset of config.coreset_ratio. The bank therefore uses every
    image, and leaving out one fold's rows gives exactly a bank built from the
    other folds alone, which is what cross-fitted calibration needs. One
    coreset over all patches would not give that: the center that covers a
    pattern common to every fold comes from one image, and removing its fold
    would leave that pattern uncovered and the calibration maps too rough.
    Greedy selection costs patches x centers, so five folds also take about a
    fifth of the time of one selection over everything.

    Returns:
        Row indices into grid.reshape(-1, C), fold by fold.
    """
    count, height, width, channels = grid.shape
    rows = grid.reshape(-1, channels)
    folds = min(config.crossfit_folds, count)
    fold = fold_of_images(count, folds, config.seed)
    patches = height * width
    sizes = _fold_sizes(np.bincount(fold, minlength=folds) * patches, config)
    selected = []
    for f in range(folds):
        if report is not None:
            report("coreset", f / folds)
        images = np.flatnonzero(fold == f)
        members = (images[:, None] * patches + np.arange(patches)).ravel()
        chosen = greedy_coreset(
            rows[members],
            int(sizes[f]),
            projection_dim=config.coreset_projection_dim,
            seed=config.seed + f,
            should_stop=should_stop,
        )
        selected.append(members[chosen])
    return np.concatenate(selected)


def _fold_sizes(fold_rows: np.ndarray, config: EngineConfig) -> np.ndarray:
    """Split ceil(ratio x all rows) over the folds by largest remainder."""
    total = max(len(fold_rows), math.ceil(config.coreset_ratio * fold_rows.sum()))
    shares = config.coreset_ratio * fold_rows
    sizes = np.maximum(np.floor(shares).astype(np.int64), 1)
    order = np.argsort(-(shares - np.floor(shares)), kind="stable")
    sizes[order[: max(0, total - sizes.sum())]] += 1
    return np.minimum(sizes, fold_rows)


def calibration_images(count: int, limit: int, seed: int) -> np.ndarray:
    """Pick at most `limit` training images (sorted indices) to calibrate on."""
    if count <= limit:
        return np.arange(count)
    chosen = np.random.default_rng(seed + 1).choice(count, limit, replace=False)
    return np.sort(chosen)


def calibration_grids(
    grid: np.ndarray,
    bank: MemoryBank,
    coreset_rows: np.ndarray,
    config: EngineConfig,
    mode: str | None = None,
    report: Callable[[str, float], None] | None = None,
    queries: np.ndarray | None = None,
) -> np.ndarray:
    """Score training images' patches for calibration, one grid per image.

    At most config.calibration_images images are scored (chosen at random),
    because the search cost grows with images x bank size, i.e. with the
    square of the training set. "naive" searches the final bank, which
    contains each image's own patches, so its scores are biased low.
    "crossfit" scores each fold of images with the final bank minus the
    rows that came from that fold, which is the coreset of the other folds
    (see foldwise_coreset), so no image is scored against its own patches.

    queries, when given, contains (len(chosen), h, w, C) features to score in
    place of the chosen images' own, against the same banks, such as the
    features of altered copies of those images.
    """
    mode = mode or config.calibration
    count, height, width, channels = grid.shape
    chosen = calibration_images(count, config.calibration_images, config.seed)
    if queries is None:
        queries = grid[chosen]
    if mode == "naive":
        rows = queries.reshape(-1, channels)
        return bank.patch_scores(rows).reshape(len(chosen), height, width)

    folds = min(config.crossfit_folds, count)
    fold = fold_of_images(count, folds, config.seed)
    source_image = coreset_rows // (height * width)
    scores = np.empty((len(chosen), height, width), dtype=np.float32)
    for f in range(folds):
        if report is not None:
            report("calibration", f / folds)
        held_out = np.flatnonzero(fold[chosen] == f)
        if held_out.size == 0:
            continue
        fold_bank = bank.subset(np.flatnonzero(fold[source_image] != f))
        rows = queries[held_out].reshape(-1, channels)
        scores[held_out] = fold_bank.patch_scores(rows).reshape(-1, height, width)
    return scores


def describe_grids(
    grids: np.ndarray, config: EngineConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (descriptors, max scores, median pixel) of each grid's map."""
    descriptors, maxima, medians = [], [], []
    for start in range(0, len(grids), _MAP_CHUNK):
        chunk = torch.from_numpy(
            np.ascontiguousarray(grids[start : start + _MAP_CHUNK])
        )
        maps = anomaly_maps(chunk, config.input_size, config.blur_sigma)
        source = chunk if config.descriptor_map == "patch" else maps
        descriptors.append(structural_descriptor(source))
        maxima.append(maps.amax(dim=(1, 2)).double().numpy())
        medians.append(maps.flatten(1).median(dim=1).values.double().numpy())
    return np.concatenate(descriptors), np.concatenate(maxima), np.concatenate(medians)


def fit_model(
    cls, images, config: EngineConfig, backbone: Backbone, progress, should_stop
):
    """Run the whole fit and return a `cls` (StructCoreModel) instance."""
    from app.engine.model import FitCancelledError, _Stopwatch

    report = _Reporter(progress, should_stop)
    clock = _Stopwatch()
    config = resolve_working_size(config, images)
    logger.info("fit started: %d images, config %s", len(images), config.to_dict())

    grid = extract_features(images, config, backbone, report)
    count, height, width, channels = grid.shape
    rows = grid.reshape(-1, channels)
    clock.lap("features")

    try:
        coreset_rows = foldwise_coreset(grid, config, should_stop, report)
    except InterruptedError as error:
        raise FitCancelledError("fit cancelled during coreset") from error
    bank = MemoryBank(rows[coreset_rows], config.index_type, config.num_neighbors)
    clock.lap("coreset")

    grids = calibration_grids(grid, bank, coreset_rows, config, report=report)
    descriptors, maxima, medians = describe_grids(grids, config)
    calibration = calibrate(
        descriptors, maxima, config.distance_norm, config.structure_weight
    )
    scores = calibration.image_scores(maxima, descriptors)
    threshold = cls.threshold_for_rate(scores, config.target_false_reject_rate)
    # Display scale fixed per model: the typical good pixel is black and the
    # highest good-image maximum is mid-grey, so a good part stays dark.
    low = float(np.median(medians))
    high = float(maxima.max()) * 2.0 - low
    clock.lap("calibration")
    report("calibration", 1.0)

    info = {
        "num_train_images": count,
        "backbone": asdict(backbone.info),
        "versions": versions.collect(),
        "fit_seconds": {k: round(v, 3) for k, v in clock.seconds.items()},
        "calibration_max_score_mean": float(maxima.mean()),
        "threshold_source": "rate",
    }
    logger.info(
        "fit finished: %d images, bank %d, threshold %.4f, seconds %s",
        count,
        len(bank),
        threshold,
        info["fit_seconds"],
    )
    model = cls(
        config,
        backbone,
        bank,
        calibration,
        scores,
        threshold,
        (low, max(high, low + 1e-6)),
        info,
    )
    return model, {"grid": grid, "coreset_rows": coreset_rows}
