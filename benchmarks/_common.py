"""Helpers shared by the benchmark scripts: datasets, machine facts, output."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "results" / "benchmarks"

# Used when neither --datasets nor STRUCTCORE_DATASETS is given, as in
# scripts/test: the shared folder next to the checkout.
FALLBACK_DATASETS = REPO_ROOT.parent / "shared" / "datasets"

# Environment variables that change how torch, faiss and BLAS use threads.
_THREAD_VARIABLES = (
    "OMP_WAIT_POLICY",
    "OMP_NUM_THREADS",
    "GOMP_SPINCOUNT",
    "STRUCTCORE_TORCH_THREADS",
)

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def add_common_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """Add --datasets, --output and --max-load to a script's parser."""
    parser.add_argument(
        "--datasets",
        type=Path,
        default=None,
        help="folder with mvtec_ad_512/, magnetic_tile/ and visa_512/ "
        "(default: $STRUCTCORE_DATASETS, else ../shared/datasets)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS_DIR / f"{name}.json",
        help="JSON file the results are written to (default: %(default)s)",
    )
    parser.add_argument(
        "--max-load",
        type=float,
        default=None,
        help="wait until the 1-minute load average is below this value "
        "before measuring (default: start at once)",
    )
    parser.add_argument(
        "--max-wait",
        type=float,
        default=600.0,
        help="seconds to wait for --max-load before measuring anyway "
        "(default: %(default)s)",
    )


def dataset_root(argument: Path | None) -> Path:
    """Return the datasets folder from --datasets, the environment or the default."""
    root = argument or os.environ.get("STRUCTCORE_DATASETS") or FALLBACK_DATASETS
    root = Path(root)
    if not root.is_dir():
        msg = (
            f"datasets folder {root} not found; pass --datasets or set "
            "STRUCTCORE_DATASETS"
        )
        raise SystemExit(msg)
    return root


def image_files(folder: Path) -> list[Path]:
    """Return the image files directly inside `folder`, sorted by name."""
    if not folder.is_dir():
        raise SystemExit(f"image folder {folder} not found")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)


def category_test_images(category: Path) -> list[Path]:
    """Return every test image of an MVTec-layout category, good ones first."""
    folders = sorted(p for p in (category / "test").iterdir() if p.is_dir())
    folders.sort(key=lambda p: p.name != "good")
    return [path for folder in folders for path in image_files(folder)]


def wait_for_quiet_machine(max_load: float | None, max_wait: float) -> None:
    """Sleep until the 1-minute load average drops below `max_load`."""
    if max_load is None:
        return
    deadline = time.monotonic() + max_wait
    while os.getloadavg()[0] >= max_load:
        if time.monotonic() >= deadline:
            print(
                f"load average {os.getloadavg()[0]:.2f} still >= {max_load} "
                f"after {max_wait:.0f} s; measuring anyway",
                flush=True,
            )
            return
        print(f"load average {os.getloadavg()[0]:.2f}, waiting 15 s", flush=True)
        time.sleep(15)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _git(*args: str) -> str:
    try:
        result = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return result.stdout.strip()


def machine_info() -> dict:
    """Collect the facts a benchmark record needs: hardware, versions, commit."""
    import faiss
    import timm
    import torch

    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_tracked_changes": bool(status and status != "unknown"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "faiss": faiss.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "environment": {name: os.environ.get(name) for name in _THREAD_VARIABLES},
    }


def print_machine(info: dict) -> None:
    print(
        f"machine: {info['nproc']} CPUs ({info['cpu_model']}), "
        f"{info['memory_gib']} GiB RAM, load average {info['load_average']}"
    )
    print(
        f"versions: torch {info['torch']} ({info['torch_threads']} threads), "
        f"faiss {info['faiss']}, timm {info['timm']}, numpy {info['numpy']}"
    )
    print(f"commit {info['git_commit'][:12]}, {info['date_utc']}")
    settings = {k: v for k, v in info["environment"].items() if v is not None}
    print(f"thread settings: {settings or 'none set'}")


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Return count, p50, p95, p99 and mean of durations, in milliseconds."""
    values = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {
        "count": int(values.size),
        "p50": round(float(np.percentile(values, 50)), 2),
        "p95": round(float(np.percentile(values, 95)), 2),
        "p99": round(float(np.percentile(values, 99)), 2),
        "mean": round(float(values.mean()), 2),
    }


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print rows as a Markdown table, so it can be pasted into the docs."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [
        max([len(header)] + [len(row[i]) for row in cells])
        for i, header in enumerate(headers)
    ]
    for line in [list(headers), ["-" * w for w in widths], *cells]:
        padded = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        print("| " + " | ".join(padded) + " |")


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def write_json(path: Path, document: dict) -> None:
    """Write the results document, creating the folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"results written to {path}")
