"""Image AUROC of image-score variants, recomputed from structcore-eval runs.

Every variant is set from the cross-fitted calibration images alone, which
are good images without labels. The test labels only measure it. The script
reads the per-image max scores and descriptors that `structcore-eval` writes
into results.json.

    .venv/bin/python benchmarks/score_variants.py RUN/results.json [...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from app.engine.descriptor import calibrate
from app.evaluation.metrics import image_auroc


def _whitened_distance(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Return the Mahalanobis distance of each row of `values` under the full
    covariance of `reference` (rows are images, columns are features)."""
    mean = reference.mean(axis=0)
    covariance = np.cov(reference, rowvar=False, bias=True)
    whitening = np.linalg.cholesky(np.linalg.inv(covariance))
    return np.linalg.norm((values - mean) @ whitening, axis=1)


def _hybrid(max_scores, distances, calibration_max, calibration_distances):
    """Return max(S) + lambda * D with lambda = std(max) / std(D) on calibration."""
    weight = calibration_max.std() / calibration_distances.std()
    return max_scores + weight * distances


def score_variants(result: dict) -> dict[str, float]:
    """Return the image AUROC of each variant for one category's result."""
    test = result["per_image"]
    labels = np.asarray(test["labels"])
    max_scores = np.asarray(test["max_score"])
    phi = np.asarray(test["phi_patch"])
    calibration = result["calibration_per_image"]["crossfit"]
    calibration_max = np.asarray(calibration["max_score"])
    calibration_phi = np.asarray(calibration["phi_patch"])

    # Use the engine's own calibration so that the default column is the score
    # a fitted model gives.
    default = calibrate(calibration_phi, calibration_max, norm="l2")
    joint = np.c_[max_scores, phi]
    calibration_joint = np.c_[calibration_max, calibration_phi]
    distances = {
        "phi, diagonal (default)": (
            default.distances(phi),
            default.distances(calibration_phi),
        ),
        "phi, full covariance": (
            _whitened_distance(phi, calibration_phi),
            _whitened_distance(calibration_phi, calibration_phi),
        ),
        "[max, phi], full covariance": (
            _whitened_distance(joint, calibration_joint),
            _whitened_distance(calibration_joint, calibration_joint),
        ),
    }

    aurocs = {"max pooling": image_auroc(labels, max_scores)}
    for name, (test_distance, calibration_distance) in distances.items():
        aurocs[f"D of {name}"] = image_auroc(labels, test_distance)
        hybrid = _hybrid(
            max_scores, test_distance, calibration_max, calibration_distance
        )
        aurocs[f"hybrid of {name}"] = image_auroc(labels, hybrid)
    return aurocs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="results.json files")
    args = parser.parse_args(argv)

    rows = []
    for path in args.results:
        for result in json.loads(path.read_text())["results"]:
            # Results written before structcore-eval recorded the working size
            # have no image_size key.
            sides = result.get("image_size")
            size = "x".join(map(str, sides)) if sides else "not recorded"
            rows.append((result["category"], size, score_variants(result)))
    if not rows:
        parser.error("the results.json files contain no category results")

    names = list(rows[0][2])
    print("| category | working size | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 2) + "|")
    for category, size, aurocs in rows:
        cells = " | ".join(f"{aurocs[name]:.3f}" for name in names)
        print(f"| {category} | {size} | {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
