"""Anomaly maps from patch scores: upsampling and Gaussian smoothing."""

from __future__ import annotations

import functools

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


def upsample_and_blur(
    patch_scores: torch.Tensor, size: tuple[int, int], sigma: float
) -> torch.Tensor:
    """Upsample (B, h, w) patch scores bilinearly to `size`, then blur them.

    The direct computation; `anomaly_maps` gives the same maps faster.
    """
    upsampled = F.interpolate(
        patch_scores.unsqueeze(1), size=size, mode="bilinear", align_corners=False
    ).squeeze(1)
    return gaussian_blur(upsampled, sigma)


@functools.lru_cache(maxsize=32)
def _axis_operator(cells: int, pixels: int, sigma: float) -> torch.Tensor:
    """(pixels, cells) matrix of upsampling then blurring along one axis.

    Bilinear upsampling and the Gaussian blur are both separable and linear,
    so their effect along an axis is one matrix: its columns are the direct
    computation applied to each unit vector.
    """
    basis = torch.eye(cells, dtype=torch.float32).unsqueeze(-1)  # (cells, cells, 1)
    columns = upsample_and_blur(basis, (pixels, 1), sigma)  # (cells, pixels, 1)
    return columns[:, :, 0].T.contiguous()


def anomaly_maps(
    patch_scores: torch.Tensor, size: tuple[int, int], sigma: float
) -> torch.Tensor:
    """Upsample (B, h, w) patch scores bilinearly to `size` and blur them.

    Sigma 4 at the working resolution is PatchCore's setting. Computed as
    rows @ scores @ columns.T with one matrix per axis, which costs a small
    fraction of convolving the full-size map.
    """
    cells_h, cells_w = patch_scores.shape[-2:]
    rows = _axis_operator(cells_h, size[0], float(sigma)).to(patch_scores)
    columns = _axis_operator(cells_w, size[1], float(sigma)).to(patch_scores)
    return rows @ patch_scores @ columns.T


def resize_map(anomaly_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize one (H, W) map bilinearly to `size` = (height, width)."""
    if anomaly_map.shape == tuple(size):
        return anomaly_map.astype(np.float32, copy=False)
    tensor = torch.from_numpy(np.ascontiguousarray(anomaly_map, dtype=np.float32))
    resized = F.interpolate(
        tensor[None, None], size=size, mode="bilinear", align_corners=False
    )
    return resized[0, 0].numpy()
