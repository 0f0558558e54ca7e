"""Markdown tables of structcore-eval results."""

from __future__ import annotations


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _summary_table(results: list[dict]) -> list[str]:
    lines = [
        "| category | train | working size | test | bank | image AUROC default "
        "| max pooling | top-1 % mean | pixel AUROC | PRO (30 % FPR) | fit s "
        "| ms / image |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        auroc = r["image_auroc"]
        height, width = r["image_size"]
        lines.append(
            f"| {r['category']} | {r['num_train']} | {height}x{width} "
            f"| {r['num_test']} "
            f"| {r['bank_size']} | {_fmt(auroc['default'])} | {_fmt(auroc['max'])} "
            f"| {_fmt(auroc['top1_mean'])} | {_fmt(r['pixel_auroc'])} "
            f"| {_fmt(r['pro'])} | {_fmt(r['fit_seconds'], 1)} "
            f"| {_fmt(r['ms_per_image'], 1)} |"
        )
    return lines


def _ablation_table(result: dict) -> list[str]:
    rows = result["ablation"]
    scales = [k for k in rows[0] if k.startswith("auroc_hybrid_x")]
    header = " | ".join(f"hybrid λ×{k.removeprefix('auroc_hybrid_x')}" for k in scales)
    bias = result["calibration_bias"]
    lines = [
        f"**{result['category']}**: max pooling {_fmt(result['image_auroc']['max'])}; "
        f"mean max score of good test maps {_fmt(bias['good_test_max_mean'], 2)}, "
        f"of naive calibration maps {_fmt(bias['naive_max_mean'], 2)}, "
        f"of cross-fitted ones {_fmt(bias['crossfit_max_mean'], 2)}.",
        "",
        f"| calibration | descriptor map | norm | λ | D alone | {header} |",
        "|---|---|---|---|---|" + "---|" * len(scales),
    ]
    for row in rows:
        cells = " | ".join(_fmt(row[k]) for k in scales)
        lines.append(
            f"| {row['calibration']} | {row['descriptor_map']} | {row['norm']} "
            f"| {_fmt(row['lambda'], 2)} | {_fmt(row['auroc_distance'])} | {cells} |"
        )
    return lines


def _search_table(result: dict) -> list[str]:
    lines = [
        f"**{result['category']}**, bank search over the same bank:",
        "",
        "| index | search ms / image | image AUROC default | max pooling "
        "| pixel AUROC | patches > 1 % above exact |",
        "|---|---|---|---|---|---|",
    ]
    for row in result.get("search_ablation", []):
        lines.append(
            f"| {row['index_type']} | {_fmt(row['search_ms_per_image'], 1)} "
            f"| {_fmt(row['image_auroc_default'])} | {_fmt(row['image_auroc_max'])} "
            f"| {_fmt(row['pixel_auroc'])} "
            f"| {_fmt(row['patches_over_1pct_above_exact'], 4)} |"
        )
    return lines


def _held_out_line(result: dict) -> str:
    held_out = result["held_out_descriptor"]

    def z_means(values: list[float]) -> str:
        return ", ".join(f"{v:+.2f}" for v in values)

    parts = [
        f"{name}: D alone {_fmt(held_out[name]['auroc_distance'])}, hybrid "
        f"{_fmt(held_out[name]['auroc_hybrid'])}, good test z "
        f"{z_means(held_out[name]['good_test_z_mean'])}"
        for name in ("mean", "without_last_fold")
    ]
    return (
        f"**{result['category']}**, descriptor of test images read from "
        f"leave-one-fold-out scores (default {_fmt(result['image_auroc']['default'])}, "
        f"good test z of std, top 1 %, total variation "
        f"{z_means(held_out['usual_good_test_z_mean'])}): " + "; ".join(parts) + "."
    )


def _synthetic_table(result: dict) -> list[str]:
    rows = result["synthetic_lambda"]
    scales = [k.removeprefix("test_x") for k in rows[0] if k.startswith("test_x")]
    lines = [
        f"**{result['category']}**, λ scale judged on CutPaste defects of "
        "calibration images (synthetic) and on the test split (test), image AUROC:",
        "",
        "| norm | " + " | ".join(f"λ×{s}" for s in scales) + " | best on synthetic |",
        "|---|" + "---|" * (len(scales) + 1),
    ]
    for row in rows:
        cells = " | ".join(
            f"{_fmt(row[f'synthetic_x{s}'])} / {_fmt(row[f'test_x{s}'])}"
            for s in scales
        )
        synthetic = [row[f"synthetic_x{s}"] for s in scales]
        if max(synthetic) == min(synthetic):
            best = "all equal"
        else:
            best = f"λ×{scales[synthetic.index(max(synthetic))]}"
        lines.append(f"| {row['norm']} | {cells} | {best} |")
    return lines


def markdown_report(document: dict) -> str:
    """Render the summary table, then each category's ablation tables."""
    lines = [
        f"Command: `{document['command']}`  ",
        f"Date: {document['date']}; machine: {document['machine']['processor']}, "
        f"{document['machine']['cpu_threads']} torch threads "
        f"({document['machine']['platform']})",
        "",
        *_summary_table(document["results"]),
        "",
    ]
    for result in document["results"]:
        lines.extend([*_ablation_table(result), ""])
        if result.get("search_ablation"):
            lines.extend([*_search_table(result), ""])
        if result.get("held_out_descriptor"):
            lines.extend([_held_out_line(result), ""])
        if result.get("synthetic_lambda"):
            lines.extend([*_synthetic_table(result), ""])
    return "\n".join(lines)
