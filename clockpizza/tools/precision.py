"""Does a reduced precision change the science? Runs tables of one grid in several precisions
compared run by run against fp32.

    python -m clockpizza.tools.precision OUT_FP32 OUT_TF32 OUT_BF16 [--report report/benchmarks.md]

Each argument is a folder written by :mod:`clockpizza.tools.paper_scale` (its ``runs.parquet``
and ``meta.json``); the first is the fp32 reference. Runs are matched by everything that defines
them except the precision (attention rate, width, seed, layers, activation, ablations, steps).
The rule (issue 10): a precision may be the paper-scale default only if it changes **no** phase
label and moves the GS and DI medians (per attention rate and width) by less than 0.02.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from clockpizza.io.table import read_runs_table, write_text

KEYS = ["family", "attn_rate", "width", "seed", "n_layers", "act", "diff_vocab", "eqn_sign",
        "steps"]
METRICS = ("gradient_symmetricity", "distance_irrelevance")
MAX_MEDIAN_SHIFT = 0.02
SECTION = "## Precision study"


def compare(reference: pd.DataFrame, other: pd.DataFrame) -> dict[str, object]:
    """|ΔGS|, |ΔDI| per run, phase agreement and the largest median shift, against fp32."""
    ref, oth = reference.set_index(KEYS), other.set_index(KEYS)
    common = ref.index.intersection(oth.index)
    if common.empty:
        raise ValueError("the two tables share no run (same grid in both precisions needed)")
    ref, oth = ref.loc[common], oth.loc[common]
    out: dict[str, object] = {"n_runs": len(common),
                              "phase_agreement": float((ref["phase"] == oth["phase"]).mean())}
    for m in METRICS:
        delta = (ref[m] - oth[m]).abs()
        by = ["attn_rate", "width"]
        shift = (ref.groupby(level=by)[m].median() - oth.groupby(level=by)[m].median()).abs()
        out[f"max_abs_delta_{m}"] = float(delta.max())
        out[f"median_abs_delta_{m}"] = float(delta.median())
        out[f"max_median_shift_{m}"] = float(shift.max())
    out["acceptable"] = bool(out["phase_agreement"] == 1.0 and all(
        out[f"max_median_shift_{m}"] < MAX_MEDIAN_SHIFT for m in METRICS))
    return out


def _meta(folder: Path) -> dict[str, object]:
    path = folder / "meta.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def markdown(rows: list[tuple[str, dict[str, object], dict[str, object]]]) -> str:
    lines = [SECTION, "",
             "Written by `python -m clockpizza.tools.precision`: the same grid trained in each "
             "precision, compared run by run with fp32. A precision may be a paper-scale "
             f"default only if no phase label changes and no GS/DI median moves by "
             f"{MAX_MEDIAN_SHIFT} or more.", "",
             "| precision | device | runs | phase agreement | max abs dGS | max abs dDI | "
             "max median shift GS | max median shift DI | train s | acceptable |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, c, meta in rows:
        wall = meta.get("wall_s", {})
        train_s = wall.get("train_s", "") if isinstance(wall, dict) else ""
        lines.append(
            f"| {name} | {meta.get('device', '')} | {c['n_runs']} | {c['phase_agreement']:.3f} | "
            f"{c['max_abs_delta_gradient_symmetricity']:.4f} | "
            f"{c['max_abs_delta_distance_irrelevance']:.4f} | "
            f"{c['max_median_shift_gradient_symmetricity']:.4f} | "
            f"{c['max_median_shift_distance_irrelevance']:.4f} | {train_s} | "
            f"{'yes' if c['acceptable'] else 'no'} |")
    return "\n".join(lines) + "\n"


def update_report(report: Path, section: str) -> None:
    """Replace (or append) the precision section of the benchmark report."""
    text = report.read_text() if report.is_file() else ""
    head, found, tail = text.partition(SECTION)
    rest = tail.split("\n## ", 1)[1] if found and "\n## " in tail else ""
    new = head.rstrip() + ("\n\n" if head.strip() else "") + section
    write_text(report, new + (("\n## " + rest) if rest else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path, help="fp32 first, then the others")
    ap.add_argument("--report", type=Path, default=None, help="benchmark report to update")
    args = ap.parse_args(argv)
    if len(args.folders) < 2:
        ap.error("give the fp32 folder and at least one other")
    reference = read_runs_table(args.folders[0] / "runs.parquet")
    rows = []
    for folder in args.folders[1:]:
        meta = _meta(folder)
        name = str(meta.get("precision", folder.name))
        rows.append((name, compare(reference, read_runs_table(folder / "runs.parquet")), meta))
    text = markdown(rows)
    print(text)
    if args.report is not None:
        update_report(args.report, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
