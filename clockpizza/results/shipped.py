"""The paper-length results shipped in git under ``results/<name>/`` (no weights), read as one
table for the report's "Paper scale" section. Torch-free.

Each folder is what ``python -m clockpizza.tools.paper_scale`` writes: ``runs.parquet`` and
``dynamics.parquet`` (the metrics tables of its finished widths), ``provenance.parquet`` (per run:
device, CPU, threads, engine, precision, wall time, commit) and ``meta.json`` (the command and
which widths are done). The runs are labelled again here by the phase rule in force, so the
paper-scale section and the live grid always use one rule.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from clockpizza.io.params import PhaseConfig
from clockpizza.io.table import LABELLED_COLUMNS, RUN_COLUMNS
from clockpizza.results.boundary import Boundary, boundary_block
from clockpizza.results.labels import label_tables
from clockpizza.results.paper_compare import (
    DI,
    GS,
    MATCH_DRAWS,
    PAPER_WIDTH,
    TOL_DI,
    TOL_GS,
    alpha_tenth,
    at_most_chance,
    match_chance,
    tenth_table,
)
from clockpizza.results.selection import main_runs

RESULTS = Path("results")
FILES = ("runs.parquet", "dynamics.parquet", "provenance.parquet", "meta.json")


@dataclass(frozen=True)
class Shipped:
    """One results folder."""

    name: str
    runs: pd.DataFrame  # runs table rows, relabelled
    dynamics: pd.DataFrame  # dynamics table rows (every snapshot of every run), relabelled
    provenance: pd.DataFrame
    meta: dict[str, Any]


def shipped_folders(root: str | Path = RESULTS) -> list[Path]:
    """The folders of ``root`` that hold a paper-scale table (every file of :data:`FILES`), by
    name; a folder with some but not all of them is an error naming what is missing."""
    out = []
    for folder in sorted(p for p in Path(root).glob("*") if p.is_dir()):
        have = [f for f in FILES if (folder / f).is_file()]
        if not have or have == ["meta.json"]:
            continue  # another kind of result (e.g. results/mid_alpha)
        missing = [f for f in FILES if f not in have]
        if missing:
            raise FileNotFoundError(f"{folder}: a paper-scale results folder without "
                                    f"{', '.join(missing)} (python -m clockpizza.tools."
                                    "paper_scale writes them all after each width)")
        out.append(folder)
    return out


def read_shipped(folder: Path, rule: PhaseConfig) -> Shipped:
    """A results folder, its runs labelled by ``rule``."""
    runs = pd.read_parquet(folder / "runs.parquet")
    missing = [c for c in RUN_COLUMNS if c not in runs.columns]
    if missing:
        raise ValueError(f"{folder / 'runs.parquet'}: missing columns {missing}")
    dynamics = pd.read_parquet(folder / "dynamics.parquet").drop(columns="phase")
    measured = runs.drop(columns=list(LABELLED_COLUMNS))
    labelled, snapshots = label_tables(measured, dynamics, rule)
    return Shipped(folder.name, labelled[list(RUN_COLUMNS)], snapshots,
                   pd.read_parquet(folder / "provenance.parquet"),
                   json.loads((folder / "meta.json").read_text()))


def combined_runs(shipped: list[Shipped]) -> pd.DataFrame:
    """Every shipped run in one runs table, with the folder it came from (``source``)."""
    frames = [s.runs.assign(source=s.name) for s in shipped if len(s.runs)]
    if not frames:
        return pd.DataFrame(columns=[*RUN_COLUMNS, "source"])
    return pd.concat(frames, ignore_index=True)


def train_hours(provenance: pd.DataFrame) -> float:
    """The wall time that trained these runs, in hours: each batch of models (a chunk: one
    width and seed, its wall time and size) counted once, not once per run."""
    chunks = provenance.drop_duplicates(["width", "seed", "chunk_wall_s", "chunk_models"])
    return float(chunks["chunk_wall_s"].sum()) / 3600


def provenance_summary(s: Shipped) -> dict[str, Any]:
    """What made a results folder, in one record: the command, the grid, the machine, the
    training wall time (each chunk counted once) and the commits."""
    p = s.provenance
    return {
        "name": s.name, "command": s.meta.get("command", ""), "runs": len(s.runs),
        # --train-only processes that shared the training (the folder's README names them)
        "helper_commands": len(set(p["trained_by"]) - {s.meta.get("command", "")}),
        "widths": sorted(int(w) for w in s.runs["width"].unique()),
        "seeds": sorted(int(x) for x in s.runs["seed"].unique()),
        "attn_rates": len(s.runs["attn_rate"].unique()),
        "steps": sorted(int(x) for x in s.runs["steps"].unique()),
        "own_weights_and_split": bool(s.runs["init_per_run"].all()
                                      and s.runs["split_per_run"].all()),
        "devices": sorted(set(p["device"])), "cpus": sorted(set(p["cpu"])),
        "threads": sorted(int(t) for t in set(p["threads"])),
        "engines": sorted(set(p["engine"])), "precisions": sorted(set(p["precision"])),
        "train_hours": round(train_hours(p), 2),
        "commits": sorted(set(p["commit"])), "torch": sorted(set(p["torch"])),
        "widths_done": s.meta.get("widths_done", []),
    }


def _r(x: float) -> float | None:
    return round(float(x), 4) if pd.notna(x) else None


def _quartiles(values: pd.Series) -> dict[str, Any]:
    if values.empty:
        return {"n": 0, "q25": None, "median": None, "q75": None}
    q = values.quantile([0.25, 0.5, 0.75])
    return {"n": len(values), "q25": _r(q[0.25]), "median": _r(q[0.5]), "q75": _r(q[0.75])}


def paper_scale_summary(shipped: list[Shipped], runs: pd.DataFrame, boundary: Boundary | None,
                        published: pd.DataFrame, rule: PhaseConfig) -> dict[str, Any]:
    """metrics/paper_scale.json: what made each results folder, and what the runs say against
    the paper: per (width, α) medians, the α tenths at width 128 against the published runs,
    the fitted boundary read at every width, and the pizzas' DI beside the paper's."""
    out: dict[str, Any] = {"sources": [provenance_summary(s) for s in shipped],
                           "runs": len(runs)}
    main = main_runs(runs)
    if main.empty:
        return out
    widths = sorted(int(w) for w in main["width"].unique())
    out["boundary"] = boundary_block(main, PAPER_WIDTH, boundary)
    out["transition_by_width"] = {
        str(w): (_r(boundary.transition_attn_rate(w)) if boundary is not None else None)
        for w in widths}
    out["phase_share_by_width"] = {
        str(w): {ph: _r((g["phase"] == ph).mean()) for ph in ("pizza", "clock", "non-circular")}
        for w, g in main.groupby("width")}
    if PAPER_WIDTH in widths:
        at = main[main["width"] == PAPER_WIDTH]
        table = tenth_table(at, published, PAPER_WIDTH)
        tenth = alpha_tenth(published["attn_rate"])
        table["chance"] = [match_chance(published[tenth == t], n)
                           for t, n in zip(table["tenth"], table["our_runs"], strict=True)]
        both = table[(table["our_runs"] > 0) & (table["paper_runs"] > 0)]
        out["paper_tenths"] = {"width": PAPER_WIDTH, "compared": len(both),
                               "within": int(both["within"].sum()),
                               "expected_within": _r(both["chance"].sum()),
                               "p_within_or_fewer": _r(at_most_chance(
                                   list(both["chance"]), int(both["within"].sum()))),
                               "draws": MATCH_DRAWS,
                               "tol_gs": TOL_GS, "tol_di": TOL_DI,
                               # unrounded: the report rounds once, as it prints
                               "rows": [{k: (None if isinstance(v, float) and math.isnan(v)
                                             else v) for k, v in r.items()}
                                        for r in table.to_dict("records")]}
    learned = ((published["test_acc"] >= rule.min_test_acc)
               & (published["circularity"] >= rule.min_circularity))
    paper_pizza = published[learned & (published[GS] >= rule.pizza_min_gs)
                            & (published[DI] <= rule.pizza_max_di)]
    out["pizza_di"] = {"paper_w128": _quartiles(paper_pizza[DI]),
                       **{f"ours_w{w}": _quartiles(g.loc[g["phase"] == "pizza", DI])
                          for w, g in main.groupby("width")}}
    out["pizza_di_by_step"] = pizza_di_by_step(shipped)
    out["unlearned_by_width"] = {
        str(w): {"runs": len(g),
                 "below_min_test_acc": int((g["test_acc"] < rule.min_test_acc).sum())}
        for w, g in main.groupby("width")}
    return out


def _main_snapshots(shipped: list[Shipped]) -> pd.DataFrame:
    """Every shipped main run's snapshots with the run's width, α and final phase
    (``end_phase``); each folder's snapshots meet its own runs only."""
    frames = [s.dynamics.merge(main_runs(s.runs)[["run_id", "width", "attn_rate", "phase"]]
                               .rename(columns={"phase": "end_phase"}), on="run_id")
              for s in shipped]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=["run_id", "step", "width", "attn_rate", "end_phase", GS, DI])
    return pd.concat(frames, ignore_index=True)


def pizza_di_by_step(shipped: list[Shipped]) -> dict[str, Any]:
    """Per width, the median DI over training of the runs that end as pizzas: whether a longer
    run would bring their DI towards the paper's or away from it. Steps from 1 000 on (before,
    most runs have not yet learned)."""
    snaps = _main_snapshots(shipped)
    snaps = snaps[(snaps["end_phase"] == "pizza") & (snaps["step"] >= 1000)]
    return {str(w): {str(int(step)): _r(x) for step, x in g.groupby("step")[DI].median().items()}
            for w, g in snaps.groupby("width")}


def _cell_key(width: object, alpha: object) -> tuple[int, float]:
    return int(width), round(float(alpha), 6)  # type: ignore[arg-type]


def live_against_shipped(live: pd.DataFrame, shipped: list[Shipped]) -> dict[str, Any]:
    """The live grid's (width, α) medians beside the shipped runs' at the cells both have: at
    the shipped snapshot nearest the live run's length (at about that length, what the protocol
    changes, when the two differ in protocol) and at their end (protocol and length together).
    Empty when no cell is shared or the shipped runs have no snapshots."""
    mine, snaps = main_runs(live), _main_snapshots(shipped)
    if mine.empty or snaps.empty:
        return {}
    theirs = main_runs(combined_runs(shipped))
    steps = int(mine["steps"].max())
    near = int(min(sorted(snaps["step"].unique()), key=lambda s: (abs(s - steps), -s)))
    snaps = snaps[snaps["step"] == near]
    by = {name: {_cell_key(w, a): g for (w, a), g in t.groupby(["width", "attn_rate"])}
          for name, t in (("mine", mine), ("near", snaps), ("end", theirs))}
    rows = []
    for key in sorted(set(by["mine"]) & set(by["near"]) & set(by["end"])):
        m, n, e = by["mine"][key], by["near"][key], by["end"][key]
        rows.append({"width": key[0], "attn_rate": key[1], "runs": len(m),
                     "gs": _r(m[GS].median()), "di": _r(m[DI].median()),
                     "paper_runs": len(e), "gs_near": _r(n[GS].median()),
                     "di_near": _r(n[DI].median()), "gs_end": _r(e[GS].median()),
                     "di_end": _r(e[DI].median())})
    if not rows:
        return {}
    t = pd.DataFrame(rows)
    own = bool(mine["init_per_run"].all() and mine["split_per_run"].all())
    return {"steps": steps, "snapshot": near, "own_weights_and_split": own,
            "same_protocol": own == bool(theirs["init_per_run"].all()
                                         and theirs["split_per_run"].all()),
            "cells": len(t), "rows": rows,
            "mean_abs_near": {"gs": _r((t["gs"] - t["gs_near"]).abs().mean()),
                              "di": _r((t["di"] - t["di_near"]).abs().mean())},
            "mean_abs_end": {"gs": _r((t["gs"] - t["gs_end"]).abs().mean()),
                             "di": _r((t["di"] - t["di_end"]).abs().mean())}}
