"""Does a reduced precision change the science? Runs tables of one grid in several precisions
compared run by run against fp32.

    python -m clockpizza.tools.precision OUT_FP32 OUT_TF32 OUT_BF16 [--report report/benchmarks.md]
    python -m clockpizza.tools.precision OUT_FP32 OUT_TF32 --noise OUT_FP32_AGAIN

Each argument is a folder written by :mod:`clockpizza.tools.paper_scale` (its ``runs.parquet``
and ``meta.json``); the first is the fp32 reference. Runs are matched by everything that defines
them except the precision (attention rate, width, seed, layers, activation, ablations, steps).
The rule (issue 10): a precision may be the paper-scale default only if it changes **no** phase
label and moves the GS and DI medians (per attention rate and width) by less than 0.02.

On CUDA fp32 itself is not reproducible (``index_add_`` sums with atomics, in no fixed order), and
AdamW turns the last bit of a small gradient into a learning-rate-sized step, so two fp32 runs of
the same grid part after ~100 steps and a label near the phase boundary may flip between them.
With ``--noise`` (the same fp32 grid, or a subset of its runs, trained a second time) the rule is
measured against that floor, on the runs the three share: a precision qualifies when it flips no
more labels and moves no GS or DI median more than fp32 does against fp32. The last line printed
is ``qualified: NAME`` (the first precision that qualifies, else fp32).
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


def _flips_and_shift(reference: pd.DataFrame, other: pd.DataFrame,
                     index: pd.Index) -> tuple[int, float]:
    """Labels that differ, and the largest GS/DI median shift, over the runs of ``index``."""
    ref, oth = reference.set_index(KEYS).loc[index], other.set_index(KEYS).loc[index]
    flips = int((ref["phase"] != oth["phase"]).sum())
    by = ["attn_rate", "width"]
    shift = max(float((ref.groupby(level=by)[m].median()
                       - oth.groupby(level=by)[m].median()).abs().max()) for m in METRICS)
    return flips, shift


def qualify(reference: pd.DataFrame, candidate: pd.DataFrame,
            repeat: pd.DataFrame) -> dict[str, object]:
    """The noise-floor rule: ``candidate`` against ``reference`` is no worse than ``repeat``
    (fp32 again) against ``reference``, on the runs all three share."""
    common = (reference.set_index(KEYS).index.intersection(candidate.set_index(KEYS).index)
              .intersection(repeat.set_index(KEYS).index))
    if common.empty:
        raise ValueError("the fp32 repeat shares no run with the reference and the candidate")
    flips, shift = _flips_and_shift(reference, candidate, common)
    noise_flips, noise_shift = _flips_and_shift(reference, repeat, common)
    return {"n_runs": len(common), "flips": flips, "max_median_shift": shift,
            "noise_flips": noise_flips, "noise_max_median_shift": noise_shift,
            "qualifies": bool(flips <= noise_flips and shift <= noise_shift)}


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
    ap.add_argument("--noise", type=Path, default=None,
                    help="the fp32 grid (or a subset) trained again: the rule's noise floor")
    args = ap.parse_args(argv)
    if len(args.folders) < 2:
        ap.error("give the fp32 folder and at least one other")
    reference = read_runs_table(args.folders[0] / "runs.parquet")
    rows = []
    for folder in args.folders[1:]:
        meta = _meta(folder)
        table = read_runs_table(folder / "runs.parquet")
        # the runs' own precision (one per grid); a folder name only for an empty table
        found = sorted(set(table["precision"])) if "precision" in table else []
        name = str(meta.get("precision", "/".join(found) or folder.name))
        rows.append((name, compare(reference, table), meta))
    qualified = None
    if args.noise is not None:
        repeat = read_runs_table(args.noise / "runs.parquet")
        noise_rows = []
        for folder, (name, _, _) in zip(args.folders[1:], rows, strict=True):
            q = qualify(reference, read_runs_table(folder / "runs.parquet"), repeat)
            noise_rows.append((name, q))
            if q["qualifies"] and qualified is None:
                qualified = name
        rows = [(n, c | {"acceptable": q["qualifies"]}, m)
                for (n, c, m), (_, q) in zip(rows, noise_rows, strict=True)]
    text = markdown(rows)
    if args.noise is not None:
        text += noise_markdown(noise_rows)
    print(text)
    if args.report is not None:
        update_report(args.report, text)
    if args.noise is not None:
        print(f"qualified: {qualified or 'fp32'}")
    return 0


def noise_markdown(rows: list[tuple[str, dict[str, object]]]) -> str:
    """The noise-floor comparison: each precision's flips and median shift against fp32's own."""
    lines = ["", "Against the noise floor (fp32 trained twice), on the runs all three share: "
             "*acceptable* above is this rule.", "",
             "| precision | runs | labels flipped | fp32 vs fp32 flipped | max median shift | "
             "fp32 vs fp32 shift | qualifies |", "|---|---:|---:|---:|---:|---:|---|"]
    for name, q in rows:
        lines.append(f"| {name} | {q['n_runs']} | {q['flips']} | {q['noise_flips']} | "
                     f"{q['max_median_shift']:.4f} | {q['noise_max_median_shift']:.4f} | "
                     f"{'yes' if q['qualifies'] else 'no'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
