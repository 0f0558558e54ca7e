"""structcore-eval: image AUROC of max pooling versus StructCore scoring.

Runs on one category folder (MVTec AD or VisA layout) or every category under
a root, and writes results.json and results.md into the output folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import sys
import time
from pathlib import Path

import torch

from app.engine.config import EngineConfig
from app.evaluation.datasets import find_categories, load_category
from app.evaluation.report import markdown_report
from app.evaluation.runner import evaluate_category

logger = logging.getLogger(__name__)


def _parse_setting(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep:
        msg = f"--set expects key=value, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="structcore-eval", description=__doc__)
    parser.add_argument("root", type=Path, help="category folder or a root above them")
    parser.add_argument(
        "--category",
        action="append",
        default=[],
        help="evaluate only this category name (repeatable)",
    )
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        type=_parse_setting,
        metavar="KEY=VALUE",
        help="engine setting, value as JSON (e.g. --set image_size=[320,320])",
    )
    parser.add_argument(
        "--max-train",
        type=int,
        default=None,
        help="use at most this many training images per category",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="folder for results.json and results.md (default results/<time>)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    return parser


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        config = EngineConfig().replace(**dict(args.settings))
    except (TypeError, ValueError) as error:
        print(f"structcore-eval: invalid setting: {error}", file=sys.stderr)
        return 2

    folders = find_categories(args.root)
    if args.category:
        folders = [f for f in folders if f.name in args.category]
    if not folders:
        print(f"structcore-eval: no category found under {args.root}", file=sys.stderr)
        return 2

    output = args.output or Path("results") / time.strftime("%Y%m%d-%H%M%S")
    output.mkdir(parents=True, exist_ok=True)
    results = []
    for folder in folders:
        logger.info("evaluating %s", folder)
        results.append(evaluate_category(load_category(folder), config, args.max_train))

    document = _json_safe(
        {
            "command": "structcore-eval "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": {
                "platform": platform.platform(),
                "processor": platform.processor() or platform.machine(),
                "cpu_threads": torch.get_num_threads(),
            },
            "config": config.to_dict(),
            "results": results,
        }
    )
    (output / "results.json").write_text(json.dumps(document, indent=2))
    (output / "results.md").write_text(markdown_report(document))
    print(markdown_report(document))
    print(f"results written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
