"""Image AUROC, pixel AUROC and PRO (per-region overlap) up to 30 % FPR."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from sklearn.metrics import roc_auc_score

# PRO is integrated up to this false-positive rate, as in MVTec AD's protocol.
PRO_FPR_LIMIT = 0.3


def image_auroc(labels, scores) -> float:
    """Return the image-level AUROC, or NaN when only one class is present."""
    labels = np.asarray(labels)
    if labels.min() == labels.max():
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


def pixel_auroc(masks: np.ndarray, maps: np.ndarray) -> float:
    """Return the pixel AUROC of (N, H, W) maps against binary masks."""
    return image_auroc(masks.reshape(-1).astype(np.uint8), maps.reshape(-1))


def pro_score(masks: np.ndarray, maps: np.ndarray, fpr_limit: float = PRO_FPR_LIMIT):
    """Return the normalised area under the PRO curve up to `fpr_limit`.

    Each connected defect region counts once, whatever its size: the PRO at a
    threshold is the mean over regions of the share of the region's pixels at
    or above it. The curve is integrated over the false-positive rate of
    defect-free pixels from 0 to `fpr_limit`, then divided by `fpr_limit`.
    """
    normal = np.sort(maps[masks == 0].ravel())
    regions = []
    for mask, anomaly_map in zip(masks, maps, strict=True):
        labelled, count = ndimage.label(mask)
        for region in range(1, count + 1):
            regions.append(np.sort(anomaly_map[labelled == region]))
    if not regions or normal.size == 0:
        return float("nan")

    # Thresholds at the normal-pixel quantiles that span FPR 0 .. fpr_limit.
    fprs = np.linspace(0.0, fpr_limit, 301)
    positions = np.clip(
        np.ceil((1.0 - fprs) * normal.size).astype(int), 0, normal.size - 1
    )
    thresholds = normal[positions]
    actual_fpr = 1.0 - np.searchsorted(normal, thresholds, side="left") / normal.size
    overlaps = np.mean(
        [1.0 - np.searchsorted(r, thresholds, side="left") / r.size for r in regions],
        axis=0,
    )
    order = np.argsort(actual_fpr)
    fpr_sorted = np.clip(actual_fpr[order], 0.0, fpr_limit)
    return float(np.trapezoid(overlaps[order], fpr_sorted) / fpr_limit)
