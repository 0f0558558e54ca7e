"""Fit time by stage, peak memory and scoring latency against training set size.

Each measurement runs in a fresh Python process, so its peak resident set
size (getrusage ru_maxrss) is that one fit's. The child decodes the first N
images of a seeded shuffle of the training folder, fits with the
EngineConfig defaults, writes the model with StructCoreModel.save into a
temporary folder, then scores test images one at a time.

Default runs: magnetic tile (non-square JPEGs of many sizes) with 25, 50,
100, 200 and all 666 training images, and MVTec AD bottle with all 209,
whose fit has a target of 60 s.

Run: .venv/bin/python benchmarks/fit_scaling.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import (
    add_common_arguments,
    category_test_images,
    dataset_root,
    image_files,
    machine_info,
    percentiles_ms,
    print_machine,
    print_table,
    wait_for_quiet_machine,
    write_json,
)

MAGNETIC_TILE = "magnetic_tile"
BOTTLE = "mvtec_ad_512/bottle"
MAGNETIC_TILE_SIZES = (25, 50, 100, 200, 666)
# Fit target for bottle's 209 training images on the 2-core development machine.
BOTTLE_TARGET_S = 60.0
# A marginal memory cost per image above the average cost per image of the
# largest fit, by more than this factor, means growth is worse than linear.
LINEAR_TOLERANCE = 1.1
SEED = 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, "fit_scaling")
    parser.add_argument(
        "--sizes",
        default=",".join(map(str, MAGNETIC_TILE_SIZES)),
        help="magnetic tile training set sizes, comma-separated; 0 or a number "
        "above the folder's count means all images; an empty string runs none "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--score-images",
        type=int,
        default=50,
        help="test images scored one at a time after each fit (default: %(default)s)",
    )
    parser.add_argument(
        "--skip-bottle",
        action="store_true",
        help="leave out the bottle fit and its 60 s target",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    return parser.parse_args()


def _peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _shuffled(paths: list[Path]) -> list[Path]:
    order = np.random.default_rng(SEED).permutation(len(paths))
    return [paths[i] for i in order]


def run_child(category: Path, size: int, score_images: int, output: Path) -> None:
    """Measure one fit in this process and write the figures to `output`."""
    from app.engine.backbone import load_backbone
    from app.engine.config import EngineConfig
    from app.engine.imageio import decode_image_file
    from app.engine.model import StructCoreModel

    config = EngineConfig()
    load_backbone(config.backbone, config.weights_path, "cpu")
    baseline = _peak_rss_mib()

    paths = _shuffled(image_files(category / "train" / "good"))[:size]
    start = time.perf_counter()
    images = [decode_image_file(path) for path in paths]
    decode_s = time.perf_counter() - start

    start = time.perf_counter()
    model = StructCoreModel.fit(images, config, device="cpu")
    fit_s = time.perf_counter() - start
    stages = model.info["fit_seconds"]

    with tempfile.TemporaryDirectory(prefix="structcore-fit-") as folder:
        start = time.perf_counter()
        model.save(Path(folder))
        write_s = time.perf_counter() - start
    peak_after_fit = _peak_rss_mib()

    tests = [decode_image_file(p) for p in _shuffled(category_test_images(category))]
    tests = tests[:score_images]
    for image in tests[:3]:
        model.score(image)
    seconds = []
    for image in tests:
        start = time.perf_counter()
        model.score(image)
        seconds.append(time.perf_counter() - start)

    figures = {
        "category": category.name,
        "images": len(images),
        "decode_s": round(decode_s, 2),
        "features_s": stages.get("features"),
        "coreset_s": stages.get("coreset"),
        "calibration_s": stages.get("calibration"),
        "fit_s": round(fit_s, 2),
        "write_s": round(write_s, 3),
        "bank_size": len(model.bank),
        "baseline_rss_mib": round(baseline, 1),
        "peak_rss_mib": round(peak_after_fit, 1),
        "growth_mib": round(peak_after_fit - baseline, 1),
        "score_ms": percentiles_ms(seconds),
    }
    output.write_text(json.dumps(figures))


def measure(category: Path, size: int, score_images: int) -> dict:
    """Run one fit in a fresh interpreter and return its figures."""
    with tempfile.TemporaryDirectory(prefix="structcore-bench-") as folder:
        output = Path(folder) / "figures.json"
        command = [
            sys.executable,
            __file__,
            "--child",
            str(category),
            str(size),
            str(output),
            "--score-images",
            str(score_images),
        ]
        print(f"fitting {category.name} on {size} images ...", flush=True)
        subprocess.run(command, check=True)
        return json.loads(output.read_text())


def linearity(rows: list[dict]) -> dict:
    """Compare the marginal memory per image with the average of the largest."""
    rows = sorted(rows, key=lambda r: r["images"])
    marginal = [
        (larger["growth_mib"] - smaller["growth_mib"])
        / (larger["images"] - smaller["images"])
        for smaller, larger in zip(rows, rows[1:], strict=False)
    ]
    average = rows[-1]["growth_mib"] / rows[-1]["images"]
    return {
        "marginal_mib_per_image": [round(m, 3) for m in marginal],
        "average_mib_per_image_largest": round(average, 3),
        "no_worse_than_linear": bool(marginal)
        and marginal[-1] <= LINEAR_TOLERANCE * average,
    }


def print_rows(rows: list[dict]) -> None:
    print_table(
        [
            "dataset",
            "images",
            "decode s",
            "features s",
            "coreset s",
            "calibration s",
            "write s",
            "fit s",
            "bank",
            "peak RSS MiB",
            "growth MiB",
            "MiB/image",
            "score p50 ms",
        ],
        [
            [
                r["category"],
                r["images"],
                r["decode_s"],
                r["features_s"],
                r["coreset_s"],
                r["calibration_s"],
                r["write_s"],
                r["fit_s"],
                r["bank_size"],
                r["peak_rss_mib"],
                r["growth_mib"],
                round(r["growth_mib"] / r["images"], 3),
                r["score_ms"]["p50"],
            ]
            for r in rows
        ],
    )


def main() -> None:
    args = parse_args()
    if args.child:
        category, size, output = args.child
        run_child(Path(category), int(size), args.score_images, Path(output))
        return

    root = dataset_root(args.datasets)
    tile = root / MAGNETIC_TILE
    available = len(image_files(tile / "train" / "good"))
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    sizes = sorted({available if s <= 0 or s > available else s for s in sizes})

    wait_for_quiet_machine(args.max_load, args.max_wait)
    info = machine_info()
    print_machine(info)

    tile_rows = [measure(tile, size, args.score_images) for size in sizes]
    growth = linearity(tile_rows) if len(tile_rows) > 1 else None
    bottle_row = None
    if not args.skip_bottle:
        bottle = root / BOTTLE
        count = len(image_files(bottle / "train" / "good"))
        bottle_row = measure(bottle, count, args.score_images)

    print()
    print_rows(tile_rows + ([bottle_row] if bottle_row else []))
    if growth:
        print(
            f"\nmagnetic tile memory growth, marginal MiB per image between sizes: "
            f"{growth['marginal_mib_per_image']}; average of the largest fit "
            f"{growth['average_mib_per_image_largest']} MiB per image; "
            f"no worse than linear: {growth['no_worse_than_linear']}"
        )
    if bottle_row:
        met = bottle_row["fit_s"] <= BOTTLE_TARGET_S
        print(
            f"bottle fit of {bottle_row['images']} images: {bottle_row['fit_s']} s "
            f"(target <= {BOTTLE_TARGET_S:.0f} s: {'met' if met else 'missed'})"
        )

    write_json(
        args.output,
        {
            "benchmark": "fit_scaling",
            "machine": info,
            "magnetic_tile": tile_rows,
            "memory_growth": growth,
            "bottle": bottle_row,
            "bottle_target_s": BOTTLE_TARGET_S,
            "bottle_target_met": bool(bottle_row)
            and bottle_row["fit_s"] <= BOTTLE_TARGET_S,
            "load_average_end": [round(v, 2) for v in os.getloadavg()],
        },
    )


if __name__ == "__main__":
    main()
