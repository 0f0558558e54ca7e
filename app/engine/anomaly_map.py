"""Anomaly maps from patch scores: upsampling and Gaussian smoothing."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# Kernel radius in sigmas, scipy.ndimage.gaussian_filter's default truncate=4.
_TRUNCATE = 4.0


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = int(_TRUNCATE * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def _mirror_indices(size: int, pad: int, device) -> torch.Tensor:
    """Indices that extend a side of `size` by `pad` on both ends by mirroring.

    Mirroring repeats as often as needed (d c b | a b c d | c b a ...), which
    is scipy.ndimage's "mirror" mode; torch's reflect padding stops at one
    side's length.
    """
    positions = torch.arange(-pad, size + pad, device=device)
    if size == 1:
        return torch.zeros_like(positions)
    period = 2 * (size - 1)
    folded = positions.remainder(period)
    return torch.where(folded < size, folded, period - folded)


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur (B, H, W) maps with a separable Gaussian, mirroring at borders."""
    if sigma <= 0:
        return maps
    kernel = _gaussian_kernel(sigma).to(maps.device)
    radius = (kernel.numel() - 1) // 2
    height, width = maps.shape[-2:]
    x = maps.unsqueeze(1)
    x = x.index_select(3, _mirror_indices(width, radius, maps.device))
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    x = x.index_select(2, _mirror_indices(height, radius, maps.device))
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))
    return x.squeeze(1)


def anomaly_maps(
    patch_scores: torch.Tensor, size: tuple[int, int], sigma: float
) -> torch.Tensor:
    """Upsample (B, h, w) patch scores bilinearly to `size` and blur them.

    Sigma 4 at the working resolution is PatchCore's setting.
    """
    upsampled = F.interpolate(
        patch_scores.unsqueeze(1), size=size, mode="bilinear", align_corners=False
    ).squeeze(1)
    return gaussian_blur(upsampled, sigma)


def resize_map(anomaly_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize one (H, W) map bilinearly to `size` = (height, width)."""
    if anomaly_map.shape == tuple(size):
        return anomaly_map.astype(np.float32, copy=False)
    tensor = torch.from_numpy(np.ascontiguousarray(anomaly_map, dtype=np.float32))
    resized = F.interpolate(
        tensor[None, None], size=size, mode="bilinear", align_corners=False
    )
    return resized[0, 0].numpy()
