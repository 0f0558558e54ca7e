"""StructCore's structural descriptor of an anomaly map and its calibration.

phi(S) = [std of S, mean of the top 1 % of S, anisotropic total variation of S
divided by the pixel count]. Calibration on good images standardises phi per
dimension (a diagonal Mahalanobis distance). It also matches the weight lambda
of the structural distance D to the spread of the max-pooled scores, so the
image score max(S) + lambda * D mixes the two on the same scale.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

logger = logging.getLogger(__name__)

DESCRIPTOR_NAMES = ("std", "top1_mean", "total_variation")

# "l2": ||z||_2 and "linf": max |z|, as in StructCore. The "_upper" variants
# count only z > 0 (more dispersion, tail or roughness than good images), so a
# map smoother than usual is not called anomalous.
DISTANCE_NORMS = ("l2", "linf", "l2_upper", "linf_upper")

# Share of pixels averaged for the tail statistic.
TOP_SHARE = 0.01

# Smallest spread used to standardise, relative to the mean's magnitude, so
# that identical calibration images give finite z-scores.
_MIN_RELATIVE_STD = 1e-6


def structural_descriptor(maps: torch.Tensor) -> np.ndarray:
    """Return phi for each (H, W) map of a (B, H, W) batch as a (B, 3) array."""
    batch = maps.shape[0]
    flat = maps.reshape(batch, -1).double()
    pixels = flat.shape[1]

    std = flat.std(dim=1, correction=0)
    top = max(1, math.ceil(TOP_SHARE * pixels))
    top_mean = flat.topk(top, dim=1).values.mean(dim=1)
    maps64 = maps.double()
    variation = (maps64[:, 1:, :] - maps64[:, :-1, :]).abs().sum(dim=(1, 2))
    variation += (maps64[:, :, 1:] - maps64[:, :, :-1]).abs().sum(dim=(1, 2))
    return torch.stack([std, top_mean, variation / pixels], dim=1).cpu().numpy()


def structural_distance(z_scores: np.ndarray, norm: str) -> np.ndarray:
    """Return D for (B, 3) z-scores under `norm` (one of DISTANCE_NORMS)."""
    if norm not in DISTANCE_NORMS:
        msg = f"norm must be one of {DISTANCE_NORMS}, got {norm!r}"
        raise ValueError(msg)
    z = np.asarray(z_scores, dtype=np.float64)
    if norm.endswith("_upper"):
        z = np.maximum(z, 0.0)
    if norm.startswith("l2"):
        return np.sqrt((z * z).sum(axis=1))
    return np.abs(z).max(axis=1)


@dataclass(frozen=True)
class Calibration:
    """Statistics of good images that turn descriptors into image scores.

    Attributes:
        mean: per-dimension mean of phi over the calibration images.
        std: per-dimension std of phi (floored so it is never zero).
        structure_weight: lambda, the weight of D in the image score.
        norm: how z-scores combine into D.
    """

    mean: np.ndarray
    std: np.ndarray
    structure_weight: float
    norm: str

    def z_scores(self, descriptors: np.ndarray) -> np.ndarray:
        return (np.asarray(descriptors, dtype=np.float64) - self.mean) / self.std

    def distances(self, descriptors: np.ndarray) -> np.ndarray:
        return structural_distance(self.z_scores(descriptors), self.norm)

    def image_scores(
        self, max_scores: np.ndarray, descriptors: np.ndarray
    ) -> np.ndarray:
        return np.asarray(max_scores) + self.structure_weight * self.distances(
            descriptors
        )

    def to_dict(self) -> dict:
        return {
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "structure_weight": self.structure_weight,
            "norm": self.norm,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        return cls(
            mean=np.asarray(data["mean"], dtype=np.float64),
            std=np.asarray(data["std"], dtype=np.float64),
            structure_weight=float(data["structure_weight"]),
            norm=data["norm"],
        )


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    logger.warning(message)


def calibrate(
    descriptors: np.ndarray,
    max_scores: np.ndarray,
    norm: str = "l2",
    structure_weight: float | None = None,
) -> Calibration:
    """Fit the descriptor statistics and lambda on good images.

    Args:
        descriptors: (n, 3) phi of the calibration maps.
        max_scores: (n,) max of each calibration map.
        norm: one of DISTANCE_NORMS.
        structure_weight: lambda; None matches it automatically as
            std(max scores) / std(D) over the calibration images.

    A zero spread (identical images, or a single one) gives finite statistics
    and a RuntimeWarning: the std is floored, and an undefined lambda is 1.
    """
    phi = np.asarray(descriptors, dtype=np.float64)
    maxima = np.asarray(max_scores, dtype=np.float64)
    mean = phi.mean(axis=0)
    std = phi.std(axis=0)
    floor = _MIN_RELATIVE_STD * np.maximum(np.abs(mean), 1.0)
    if np.any(std < floor):
        flat = [
            n for n, s, f in zip(DESCRIPTOR_NAMES, std, floor, strict=True) if s < f
        ]
        _warn(
            f"descriptor {', '.join(flat)} does not vary over the "
            f"{len(phi)} calibration images; its std is floored to keep "
            "z-scores finite"
        )
        std = np.maximum(std, floor)

    if structure_weight is None:
        distances = structural_distance((phi - mean) / std, norm)
        spread = distances.std()
        if spread > 0 and np.isfinite(spread):
            structure_weight = float(maxima.std() / spread)
        else:
            _warn(
                "structural distance does not vary over the calibration "
                "images, so lambda cannot be matched; using lambda = 1"
            )
            structure_weight = 1.0
    return Calibration(mean, std, float(structure_weight), norm)
