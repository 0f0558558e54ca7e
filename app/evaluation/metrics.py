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

    # Thresholds at up to 1000 levels of all pixel values plus one above the
    # maximum, where FPR and PRO are both 0; a pixel counts at or above.
    levels = np.unique(np.quantile(maps, np.linspace(0.0, 1.0, 1000)))
    thresholds = np.append(levels, np.nextafter(maps.max(), np.inf))
    fpr = 1.0 - np.searchsorted(normal, thresholds, side="left") / normal.size
    pro = np.mean(
        [1.0 - np.searchsorted(r, thresholds, side="left") / r.size for r in regions],
        axis=0,
    )
    order = np.lexsort((pro, fpr))
    fpr, pro = fpr[order], pro[order]

    # Cut the curve at fpr_limit, interpolating the point on the limit.
    inside = fpr <= fpr_limit
    cut_pro = np.interp(fpr_limit, fpr, pro) if fpr[-1] > fpr_limit else pro[-1]
    curve_fpr = np.append(fpr[inside], fpr_limit)
    curve_pro = np.append(pro[inside], cut_pro)
    return float(np.trapezoid(curve_pro, curve_fpr) / fpr_limit)
