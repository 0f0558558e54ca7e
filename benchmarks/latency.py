"""Scoring latency of a fitted model against the backbone forward alone.

Fits a model on MVTec AD bottle's training images with the EngineConfig
defaults, then times two things per image, interleaved so that both see the
same machine load:

- backbone: Backbone.forward_stages on the already preprocessed tensor, the
  floor that no scoring can go below;
- full: StructCoreModel.score_batch (resize, patch features, memory bank
  search, anomaly map, structural descriptor, map resize) plus the PNG
  encoding of each anomaly map with render.anomaly_map_png.

Decoding is timed once per file and reported separately. Images cycle
through bottle's test and training images. Batch figures are per image (the
batch's time divided by its size).

Run: .venv/bin/python benchmarks/latency.py
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time

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

from app.engine.config import EngineConfig
from app.engine.imageio import decode_image_file
from app.engine.model import StructCoreModel
from app.engine.preprocess import prepare_batch
from app.engine.render import anomaly_map_png

# Target of the full score: at most this many times the backbone forward (p50).
TARGET_RATIO = 1.3
BATCH_SIZES = (1, 8)
# Batches run before measuring, so that lazy initialisation is not timed.
WARMUP_BATCHES = 3


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, "latency")
    parser.add_argument(
        "--category",
        default="mvtec_ad_512/bottle",
        help="MVTec-layout category under the datasets folder (default: %(default)s)",
    )
    parser.add_argument(
        "--config",
        type=json.loads,
        default={},
        help='EngineConfig settings as JSON, e.g. \'{"index_type": "ivfpq"}\' '
        "(default: the EngineConfig defaults)",
    )
    parser.add_argument(
        "--images",
        type=int,
        default=208,
        help="images timed per batch size, cycling through test then train "
        "images (default: %(default)s)",
    )
    return parser.parse_args()


def decode_all(paths: list) -> tuple[list[np.ndarray], list[float]]:
    images, seconds = [], []
    for path in paths:
        start = time.perf_counter()
        images.append(decode_image_file(path))
        seconds.append(time.perf_counter() - start)
    return images, seconds


def time_backbone(model: StructCoreModel, images: list[np.ndarray]) -> float:
    """Return seconds of forward_stages alone on the preprocessed batch."""
    tensor = model.backbone.to_tensor(prepare_batch(images, model.config))
    start = time.perf_counter()
    model.backbone.forward_stages(tensor)
    return time.perf_counter() - start


def time_full(
    model: StructCoreModel, images: list[np.ndarray]
) -> tuple[float, dict[str, float]]:
    """Return seconds of score_batch plus PNG encoding, and per-image stages."""
    start = time.perf_counter()
    results = model.score_batch(images)
    scored = time.perf_counter()
    for result in results:
        anomaly_map_png(result.anomaly_map, model.map_range)
    end = time.perf_counter()
    stages = dict(results[0].timings_ms)
    stages["png_encode"] = (end - scored) * 1000.0 / len(images)
    return end - start, stages


def measure(model: StructCoreModel, images: list[np.ndarray], batch_size: int):
    """Time backbone and full score on consecutive batches, alternating order."""
    count = len(images) // batch_size * batch_size
    batches = [images[i : i + batch_size] for i in range(0, count, batch_size)]
    for batch in batches[:WARMUP_BATCHES]:
        time_backbone(model, batch)
        time_full(model, batch)

    backbone, full, stages = [], [], []
    for index, batch in enumerate(batches):
        if index % 2 == 0:
            backbone.append(time_backbone(model, batch) / batch_size)
            seconds, stage_ms = time_full(model, batch)
        else:
            seconds, stage_ms = time_full(model, batch)
            backbone.append(time_backbone(model, batch) / batch_size)
        full.append(seconds / batch_size)
        stages.append(stage_ms)

    mean_stages = {
        name: round(float(np.mean([s.get(name, 0.0) for s in stages])), 2)
        for name in stages[0]
    }
    return {
        "batch_size": batch_size,
        "images": count,
        "batches": len(batches),
        "backbone_ms": percentiles_ms(backbone),
        "full_ms": percentiles_ms(full),
        "stages_ms_mean": mean_stages,
    }


def main() -> None:
    args = parse_args()
    category = dataset_root(args.datasets) / args.category
    train_paths = image_files(category / "train" / "good")
    paths = category_test_images(category) + train_paths

    wait_for_quiet_machine(args.max_load, args.max_wait)
    info = machine_info()
    print_machine(info)

    decoded, decode_seconds = decode_all(paths)
    train = decoded[len(paths) - len(train_paths) :]
    config = EngineConfig().replace(**args.config)
    print(f"fitting on {len(train)} images of {args.category} ...", flush=True)
    start = time.perf_counter()
    model = StructCoreModel.fit(train, config, device="cpu")
    fit_seconds = time.perf_counter() - start
    print(f"fitted in {fit_seconds:.1f} s, bank {len(model.bank)} patches")

    cycled = list(itertools.islice(itertools.cycle(decoded), args.images))
    runs = [measure(model, cycled, size) for size in BATCH_SIZES]
    for run in runs:
        run["ratio_p50"] = round(run["full_ms"]["p50"] / run["backbone_ms"]["p50"], 2)
        run["ratio_p95"] = round(run["full_ms"]["p95"] / run["backbone_ms"]["p95"], 2)
        run["target_met"] = run["ratio_p50"] <= TARGET_RATIO

    print()
    print_table(
        [
            "batch",
            "images",
            "backbone p50 ms",
            "backbone p95 ms",
            "full p50 ms",
            "full p95 ms",
            "ratio p50",
            "ratio p95",
            f"p50 ratio <= {TARGET_RATIO}",
        ],
        [
            [
                r["batch_size"],
                r["images"],
                r["backbone_ms"]["p50"],
                r["backbone_ms"]["p95"],
                r["full_ms"]["p50"],
                r["full_ms"]["p95"],
                r["ratio_p50"],
                r["ratio_p95"],
                "met" if r["target_met"] else "missed",
            ]
            for r in runs
        ],
    )
    decode = percentiles_ms(decode_seconds)
    print(
        f"\ndecode (not in full): p50 {decode['p50']} ms, p95 {decode['p95']} ms "
        f"over {decode['count']} files"
    )

    print("\nmean per-image stage times (timings_ms, plus PNG encoding), ms:")
    stage_names = list(runs[0]["stages_ms_mean"])
    print_table(
        ["batch", *stage_names, "sum", "full mean"],
        [
            [
                r["batch_size"],
                *(r["stages_ms_mean"][name] for name in stage_names),
                round(sum(r["stages_ms_mean"].values()), 2),
                r["full_ms"]["mean"],
            ]
            for r in runs
        ],
    )

    write_json(
        args.output,
        {
            "benchmark": "latency",
            "machine": info,
            "category": args.category,
            "config": config.to_dict(),
            "train_images": len(train),
            "bank_size": len(model.bank),
            "fit_seconds": round(fit_seconds, 2),
            "decode_ms": decode,
            "target_ratio_p50": TARGET_RATIO,
            "runs": runs,
            "load_average_end": [round(v, 2) for v in os.getloadavg()],
        },
    )


if __name__ == "__main__":
    main()
