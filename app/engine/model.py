"""A fitted StructCore model: memory bank, calibration and decision threshold."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from app.engine.anomaly_map import anomaly_maps, resize_map
from app.engine.backbone import Backbone, load_backbone
from app.engine.config import EngineConfig
from app.engine.descriptor import (
    DESCRIPTOR_NAMES,
    Calibration,
    structural_descriptor,
)
from app.engine.memory_bank import MemoryBank
from app.engine.preprocess import prepare_batch

logger = logging.getLogger(__name__)

# Minimum number of good images a fit accepts: cross-fitting needs two per fold
# to estimate the descriptor statistics.
MIN_TRAIN_IMAGES = 10

FORMAT_VERSION = 1

Progress = Callable[[str, float], None]


class FitCancelledError(Exception):
    """Raised when a fit's should_stop callback returns True."""


class InsufficientSamplesError(ValueError):
    """Raised when a fit gets fewer good images than MIN_TRAIN_IMAGES."""

    def __init__(self, count: int, minimum: int = MIN_TRAIN_IMAGES) -> None:
        self.count = count
        self.minimum = minimum
        super().__init__(
            f"a fit needs at least {minimum} good images, got {count}; "
            "upload more good samples"
        )


@dataclass
class ScoreResult:
    """Outcome of scoring one image."""

    image_score: float
    max_score: float
    structural_distance: float
    descriptor: dict[str, float]
    z_scores: dict[str, float]
    threshold: float
    is_anomalous: bool
    normality: float
    anomaly_map: np.ndarray = field(repr=False)
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = asdict(self)
        del data["anomaly_map"]
        return data


def _named(values: np.ndarray) -> dict[str, float]:
    return {name: float(v) for name, v in zip(DESCRIPTOR_NAMES, values, strict=True)}


def resolve_device(device: str | None) -> str:
    """Return "cuda" when asked or available under "auto"/None, else "cpu"."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        msg = f"device {device!r} requested but CUDA is not available; use 'cpu'"
        raise ValueError(msg)
    return device


class _Stopwatch:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._start
        self._start = now


class StructCoreModel:
    """PatchCore memory bank plus StructCore calibration for one product."""

    def __init__(
        self,
        config: EngineConfig,
        backbone: Backbone,
        bank: MemoryBank,
        calibration: Calibration,
        calibration_scores: np.ndarray,
        threshold: float,
        map_range: tuple[float, float],
        info: dict,
    ) -> None:
        self.config = config
        self.backbone = backbone
        self.bank = bank
        self.calibration = calibration
        self.calibration_scores = np.sort(np.asarray(calibration_scores, np.float64))
        self.threshold = float(threshold)
        self.map_range = (float(map_range[0]), float(map_range[1]))
        self.info = info
        self.fit_artifacts: dict | None = None

    # ---- fitting -------------------------------------------------------

    @classmethod
    def fit(
        cls,
        images: Sequence[np.ndarray],
        config: EngineConfig | None = None,
        *,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None,
        device: str | None = None,
        keep_artifacts: bool = False,
    ) -> StructCoreModel:
        """Fit a model on good images (HxWx3 uint8 RGB arrays).

        With keep_artifacts the model keeps the training patch features and
        coreset rows in `fit_artifacts`, for evaluations that recalibrate.

        Raises:
            InsufficientSamplesError: fewer than MIN_TRAIN_IMAGES images.
            FitCancelledError: should_stop returned True.
        """
        from app.engine.fitting import fit_model

        config = config or EngineConfig()
        if len(images) < MIN_TRAIN_IMAGES:
            raise InsufficientSamplesError(len(images))
        backbone = load_backbone(
            config.backbone, config.weights_path, resolve_device(device)
        )
        model, artifacts = fit_model(
            cls, images, config, backbone, progress, should_stop
        )
        model.fit_artifacts = artifacts if keep_artifacts else None
        return model

    # ---- scoring -------------------------------------------------------

    def patch_score_grid(
        self, images: Sequence[np.ndarray]
    ) -> tuple[torch.Tensor, dict]:
        """Return (B, h, w) nearest-neighbour distances and stage timings."""
        clock = _Stopwatch()
        features = self.patch_features(images, clock)
        grid = self.grid_from_features(features)
        clock.lap("search")
        return grid, clock.seconds

    def grid_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """Return the (B, h, w) bank distances of (B, C, h, w) patch features."""
        count, channels, height, width = features.shape
        rows = features.permute(0, 2, 3, 1).reshape(-1, channels).cpu().numpy()
        scores = self.bank.patch_scores(rows).reshape(count, height, width)
        return torch.from_numpy(scores.astype(np.float32))

    def patch_features(
        self, images: Sequence[np.ndarray], clock: _Stopwatch | None = None
    ) -> torch.Tensor:
        """Return the (B, C, h, w) patch features that the bank is searched with."""
        clock = clock or _Stopwatch()
        batch = prepare_batch(images, self.config)
        clock.lap("preprocess")
        features = self.backbone.patch_features(batch)
        clock.lap("features")
        return features

    def score(self, image: np.ndarray) -> ScoreResult:
        """Score one HxWx3 uint8 RGB image."""
        return self.score_batch([image])[0]

    def score_batch(self, images: Sequence[np.ndarray]) -> list[ScoreResult]:
        """Score images in order, in backbone batches of config.batch_size."""
        results: list[ScoreResult] = []
        step = self.config.batch_size
        for start in range(0, len(images), step):
            results.extend(self._score_chunk(images[start : start + step]))
        return results

    def _score_chunk(self, images: Sequence[np.ndarray]) -> list[ScoreResult]:
        grid, seconds = self.patch_score_grid(images)
        return self.results_from_grid(grid, images, seconds)

    def results_from_grid(
        self,
        grid: torch.Tensor,
        images: Sequence[np.ndarray],
        seconds: dict[str, float] | None = None,
    ) -> list[ScoreResult]:
        """Turn (B, h, w) patch scores of `images` into score results."""
        seconds = seconds or {}
        clock = _Stopwatch()
        maps = anomaly_maps(grid, self.config.input_size, self.config.blur_sigma)
        clock.lap("anomaly_map")
        source = grid if self.config.descriptor_map == "patch" else maps
        phi = structural_descriptor(source)
        z = self.calibration.z_scores(phi)
        distance = self.calibration.distances(phi)
        max_scores = maps.amax(dim=(1, 2)).double().numpy()
        scores = max_scores + self.calibration.structure_weight * distance
        clock.lap("descriptor")

        results = []
        for i, image in enumerate(images):
            full_map = self._map_at_input_size(maps[i].numpy(), image.shape[:2])
            score = float(scores[i])
            results.append(
                ScoreResult(
                    image_score=score,
                    max_score=float(max_scores[i]),
                    structural_distance=float(distance[i]),
                    descriptor=dict(
                        zip(DESCRIPTOR_NAMES, map(float, phi[i]), strict=True)
                    ),
                    z_scores=dict(zip(DESCRIPTOR_NAMES, map(float, z[i]), strict=True)),
                    threshold=self.threshold,
                    is_anomalous=score > self.threshold,
                    normality=self.normality(score),
                    anomaly_map=full_map,
                )
            )
        clock.lap("resize_map")
        share = 1000.0 / len(images)
        timings = {k: v * share for k, v in {**seconds, **clock.seconds}.items()}
        for result in results:
            result.timings_ms = dict(timings)
        return results

    def _map_at_input_size(
        self, working_map: np.ndarray, size: tuple[int, int]
    ) -> np.ndarray:
        crop = self.config.center_crop
        if crop is not None:
            # Paste the crop's map into a frame of the working resolution;
            # the border the crop dropped gets the map's minimum.
            height, width = self.config.image_size
            frame = np.full((height, width), working_map.min(), dtype=np.float32)
            top, left = (height - crop[0]) // 2, (width - crop[1]) // 2
            frame[top : top + crop[0], left : left + crop[1]] = working_map
            working_map = frame
        return resize_map(working_map, tuple(size))

    def normality(self, score: float) -> float:
        """Share of good calibration images that scored lower than `score`."""
        lower = np.searchsorted(self.calibration_scores, score, side="left")
        return float(lower / len(self.calibration_scores))

    # ---- decision ------------------------------------------------------

    @staticmethod
    def threshold_for_rate(scores: np.ndarray, rate: float) -> float:
        """Return the lowest calibration score that at most `rate` exceed."""
        ordered = np.sort(np.asarray(scores, dtype=np.float64))
        allowed = math.floor(rate * len(ordered) + 1e-9)
        return float(ordered[len(ordered) - 1 - allowed])

    def with_threshold(
        self,
        *,
        threshold: float | None = None,
        target_false_reject_rate: float | None = None,
    ) -> StructCoreModel:
        """Return a copy (sharing the bank) with another decision threshold."""
        if (threshold is None) == (target_false_reject_rate is None):
            raise ValueError(
                "give exactly one of threshold or target_false_reject_rate"
            )
        config = self.config
        if threshold is not None:
            if not math.isfinite(threshold):
                raise ValueError(f"threshold must be a finite number, got {threshold}")
        else:
            config = config.replace(target_false_reject_rate=target_false_reject_rate)
            threshold = self.threshold_for_rate(
                self.calibration_scores, target_false_reject_rate
            )
        info = {
            **self.info,
            "threshold_source": "manual"
            if target_false_reject_rate is None
            else "rate",
        }
        return StructCoreModel(
            config,
            self.backbone,
            self.bank,
            self.calibration,
            self.calibration_scores,
            threshold,
            self.map_range,
            info,
        )

    def with_index_type(self, index_type: str) -> StructCoreModel:
        """Return a copy whose bank (same rows) is searched with another index.

        Calibration and threshold stay, because the fit computes them with
        exact searches whatever the index type.
        """
        bank = MemoryBank(self.bank.features, index_type, self.config.num_neighbors)
        return StructCoreModel(
            self.config.replace(index_type=bank.index_type),
            self.backbone,
            bank,
            self.calibration,
            self.calibration_scores,
            self.threshold,
            self.map_range,
            dict(self.info),
        )

    # ---- description and storage ---------------------------------------

    def summary(self) -> dict:
        """JSON-safe description: configuration, statistics, timings, versions."""
        return {
            "config": self.config.to_dict(),
            "num_train_images": self.info["num_train_images"],
            "bank_size": len(self.bank),
            "threshold": self.threshold,
            "target_false_reject_rate": self.config.target_false_reject_rate,
            "threshold_source": self.info.get("threshold_source", "rate"),
            "map_range": list(self.map_range),
            "calibration": {
                **self.calibration.to_dict(),
                "descriptor_names": list(DESCRIPTOR_NAMES),
                "num_images": int(len(self.calibration_scores)),
                "score_mean": float(self.calibration_scores.mean()),
                "score_std": float(self.calibration_scores.std()),
                "max_score_mean": self.info.get("calibration_max_score_mean"),
            },
            "fit_seconds": self.info.get("fit_seconds", {}),
            "backbone": self.info["backbone"],
            "versions": self.info["versions"],
            "format_version": FORMAT_VERSION,
        }

    def save(self, directory: Path) -> None:
        """Write arrays (.npy) and JSON into an existing directory; no pickle."""
        directory = Path(directory)
        self.bank.save(directory)
        np.save(directory / "calibration_scores.npy", self.calibration_scores)
        document = {**self.summary(), "info": self.info}
        with (directory / "model.json").open("w") as handle:
            json.dump(document, handle, indent=2)

    @classmethod
    def load(cls, directory: Path, device: str | None = None) -> StructCoreModel:
        """Load a model written by save(); scores match to 1e-6."""
        directory = Path(directory)
        document = json.loads((directory / "model.json").read_text())
        if document.get("format_version") != FORMAT_VERSION:
            msg = (
                f"model in {directory} has format {document.get('format_version')}, "
                f"this version reads format {FORMAT_VERSION}"
            )
            raise ValueError(msg)
        config = EngineConfig.from_dict(document["config"])
        backbone = load_backbone(
            config.backbone, config.weights_path, resolve_device(device)
        )
        stored_sha = document["backbone"]["weights_sha256"]
        if stored_sha and stored_sha != backbone.info.weights_sha256:
            msg = (
                f"backbone weights differ from those the model in {directory} was "
                f"fitted with (sha256 {stored_sha[:12]} vs "
                f"{backbone.info.weights_sha256[:12]}); refit the model"
            )
            raise ValueError(msg)
        bank = MemoryBank.load(directory, config.index_type, config.num_neighbors)
        return cls(
            config,
            backbone,
            bank,
            Calibration.from_dict(document["calibration"]),
            np.load(directory / "calibration_scores.npy"),
            document["threshold"],
            tuple(document["map_range"]),
            document["info"],
        )
