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


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur (B, H, W) maps with a separable Gaussian, reflecting at borders."""
    if sigma <= 0:
        return maps
    kernel = _gaussian_kernel(sigma).to(maps.device)
    radius = (kernel.numel() - 1) // 2
    x = maps.unsqueeze(1)
    height, width = x.shape[-2:]
    # Reflect padding needs the pad to be smaller than the side.
    pad_w = min(radius, width - 1)
    pad_h = min(radius, height - 1)
    x = F.pad(x, (pad_w, pad_w, 0, 0), mode="reflect" if pad_w else "replicate")
    x = F.conv2d(x, kernel[radius - pad_w : radius + pad_w + 1].view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, pad_h, pad_h), mode="reflect" if pad_h else "replicate")
    x = F.conv2d(x, kernel[radius - pad_h : radius + pad_h + 1].view(1, 1, -1, 1))
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
