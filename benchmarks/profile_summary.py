"""Summarise a py-spy raw (collapsed stack) profile by function.

`py-spy record --format raw` writes one line per distinct stack: frames
separated by ";" from the outermost to the innermost, then a space and the
number of samples. This script prints the functions with the most samples
as the innermost frame (self time) and anywhere on the stack (total time).

Run: .venv/bin/python benchmarks/profile_summary.py PROFILE.folded
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# py-spy writes "name (file:line)"; the line number is dropped so that all
# samples of one function add up.
_LINE_NUMBER = re.compile(r":\d+\)$")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path, help="py-spy --format raw output")
    parser.add_argument(
        "--top", type=int, default=15, help="rows per table (default: %(default)s)"
    )
    parser.add_argument(
        "--within",
        default=None,
        help="keep only stacks with a frame of this function, e.g. time_full "
        "for the full scores of latency.py (default: all stacks)",
    )
    return parser.parse_args()


def function_name(frame: str) -> str:
    return _LINE_NUMBER.sub(")", frame.strip())


def summarise(path: Path, within: str | None) -> tuple[Counter, Counter, int]:
    """Return self samples, total samples per function and the sample count."""
    own: Counter = Counter()
    total: Counter = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [function_name(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        if within and not any(f.startswith(within + " (") for f in frames):
            continue
        weight = int(count)
        samples += weight
        own[frames[-1]] += weight
        for name in set(frames):
            total[name] += weight
    return own, total, samples


def print_top(title: str, counts: Counter, samples: int, top: int) -> None:
    print(f"\n{title}")
    print("| share | samples | function |")
    print("|---|---|---|")
    for name, count in counts.most_common(top):
        print(f"| {100.0 * count / samples:.1f} % | {count} | `{name}` |")


def main() -> None:
    args = parse_args()
    own, total, samples = summarise(args.profile, args.within)
    if samples == 0:
        raise SystemExit(f"no samples in {args.profile}")
    scope = f" within {args.within}" if args.within else ""
    print(f"{samples} samples{scope} in {args.profile}")
    print_top("self time (innermost frame):", own, samples, args.top)
    print_top("total time (anywhere on the stack):", total, samples, args.top)


if __name__ == "__main__":
    main()
