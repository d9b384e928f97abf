"""The report's "Two stories or one?" section: its figures and its numbers, from the neuron tables
(stage neurons), the runs table and the authors' released models; the prose is
``templates/neurons.md.j2``, included by ``report.md.j2``.

The 2026 paper's own numbers (arXiv 2512.25060, quoted for comparison only) are the constants
``CHALLENGE_*``; every other number is computed from the tables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from clockpizza.figures.plots import FigureRecipe
from clockpizza.figures.plots_neurons import (
    NEURON_FIGURES,
    disc_cka_figure,
    freqs_width_figure,
    main_neuron_runs,
    phase_diff_figure,
)
from clockpizza.io.params import NeuronsConfig
from clockpizza.io.table import NEURON_TABLES, read_table
from clockpizza.results.boundary import Boundary
from clockpizza.results.neuron_stats import MMDResult, low_high_mmd
from clockpizza.results.paper_compare import PAPER_EXAMPLES

GS, DI = "gradient_symmetricity", "distance_irrelevance"
# arXiv 2512.25060: p = 59, width 128, their own training, α = 0 and α = 1 only.
CHALLENGE_CKA = {"0": 0.988, "1": 0.974}  # layer-1 CKA to the disc, by α
CHALLENGE_MMD = 0.02  # MMD between the α = 0 and α = 1 phase-alignment distributions
_NAMES = {"pizza": "Model A", "clock": "Model B"}


@dataclass(frozen=True)
class NeuronInputs:
    """The stage neurons' tables: ours (``neurons``, ``clusters``, ``runs``: the neuron runs
    table) and the authors' (``paper_neurons``, ``paper_clusters``, ``paper_runs``)."""

    neurons: pd.DataFrame
    clusters: pd.DataFrame
    runs: pd.DataFrame
    paper_neurons: pd.DataFrame | None = None
    paper_clusters: pd.DataFrame | None = None
    paper_runs: pd.DataFrame | None = None


def load_neuron_inputs(folder: str | Path) -> NeuronInputs | None:
    """The neuron tables the neurons stage writes into ``folder`` (``metrics``), or None when
    it has not run; the authors' part is None when their tables are absent."""
    d = Path(folder)
    if not (d / "neuron_runs.parquet").is_file():
        return None

    def read(name: str, prefix: str = "") -> pd.DataFrame:
        return read_table(d / f"{prefix}{name}.parquet", NEURON_TABLES[name], "neurons")

    paper = (d / "paper_neuron_runs.parquet").is_file()
    return NeuronInputs(
        neurons=read("neurons"), clusters=read("neuron_clusters"), runs=read("neuron_runs"),
        paper_neurons=read("neurons", "paper_") if paper else None,
        paper_clusters=read("neuron_clusters", "paper_") if paper else None,
        paper_runs=read("neuron_runs", "paper_") if paper else None)


def transitions(runs: pd.DataFrame, b: Boundary | None) -> dict[int, float]:
    """Width -> the transition α there of ``b``, the boundary the summarise stage fitted
    (figure 2's line; empty without a boundary)."""
    if b is None:
        return {}
    return {int(w): b.transition_attn_rate(float(w)) for w in sorted(runs["width"].unique())
            if w > 0}


def neuron_recipes(inputs: NeuronInputs, runs: pd.DataFrame, cfg: NeuronsConfig,
                   boundary: Boundary | None) -> dict[str, FigureRecipe]:
    """The section's figures by stem (:data:`NEURON_FIGURES`), not yet drawn; none without
    main-grid rows."""
    if main_neuron_runs(inputs.runs, runs).empty:
        return {}
    alpha_fig, phase_fig, freqs_fig = NEURON_FIGURES
    return {
        alpha_fig: partial(disc_cka_figure, inputs.runs, runs, transitions(runs, boundary)),
        phase_fig: partial(phase_diff_figure, inputs.neurons, inputs.clusters, runs,
                           cfg.low_alpha_max, cfg.high_alpha_min),
        freqs_fig: partial(freqs_width_figure, inputs.runs, runs),
    }


def _median(s: pd.Series) -> float:
    return float(s.median()) if s.notna().any() else math.nan


def _grid_rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for (w, a), g in df.groupby(["width", "attn_rate"], sort=True):
        rows.append({"width": int(w), "alpha": float(a), "runs": len(g),
                     "fitted": _median(g["fitted_share"]), "r2": _median(g["median_r2"]),
                     "freqs": float(g["n_freqs"].mean()), "disc": float(g["disc_share"].mean()),
                     "cka_disc": float(g["cka_disc"].mean()),
                     "cka_torus": float(g["cka_torus"].mean()),
                     "gs": _median(g[GS]), "di": _median(g[DI])})
    return rows


def _group(df: pd.DataFrame) -> dict[str, Any]:
    return {"runs": len(df), "disc": float(df["disc_share"].mean()),
            "cka_disc": _median(df["cka_disc"]), "cka_torus": _median(df["cka_torus"]),
            "gs": _median(df[GS]), "di": _median(df[DI]),
            "clock": int((df["phase"] == "clock").sum()),
            "pizza": int((df["phase"] == "pizza").sum())}


def _finding(mmd: MMDResult, low: dict[str, Any], high: dict[str, Any]) -> dict[str, Any]:
    """What the MMD test says, for the template: whether the two groups could be compared,
    whether a permutation test ran and found them apart, and the paper's metrics' gaps."""
    tested = mmd.n_perm > 0 and not math.isnan(mmd.p_value)
    return {"compared": not math.isnan(mmd.mmd), "tested": tested,
            "apart": tested and mmd.p_value < 0.05, "n_runs": mmd.n_low + mmd.n_high,
            "gap_gs": low["gs"] - high["gs"], "gap_di": high["di"] - low["di"]}


def _paper_models(paper_runs: pd.DataFrame | None,
                  paper_clusters: pd.DataFrame | None) -> list[dict[str, Any]]:
    if paper_runs is None or paper_clusters is None or paper_runs.empty:
        return []
    out = []
    by_id = paper_runs.set_index("run_id")
    for role, runid in PAPER_EXAMPLES.items():
        if runid not in by_id.index:
            continue
        r = by_id.loc[runid]
        cl = paper_clusters[paper_clusters["run_id"] == runid].sort_values("freq")
        out.append({"name": _NAMES[role], "role": role, "run_id": runid,
                    "alpha": float(r["attn_rate"]), "width": int(r["width"]),
                    "n_neurons": int(r["n_neurons"]), "n_dead": int(r["n_dead"]),
                    "fitted": float(r["fitted_share"]), "r2": float(r["median_r2"]),
                    "cka_disc": float(r["cka_disc"]), "cka_torus": float(r["cka_torus"]),
                    "verdicts": ", ".join(f"{v} {n}" for v, n in
                                          cl["verdict"].value_counts().sort_index().items()),
                    "clusters": cl.to_dict("records")})
    return out


def neurons_context(inputs: NeuronInputs, runs: pd.DataFrame, figures: Mapping[str, str],
                    cfg: NeuronsConfig) -> dict[str, Any] | None:
    """The numbers of the section (``templates/neurons.md.j2``); None without any neuron table
    rows (ours or the authors')."""
    main = main_neuron_runs(inputs.runs, runs).merge(
        runs[["run_id", GS, DI, "phase"]], on="run_id")
    paper_models = _paper_models(inputs.paper_runs, inputs.paper_clusters)
    if main.empty and not paper_models:
        return None
    low = main[main["attn_rate"] <= cfg.low_alpha_max]
    high = main[main["attn_rate"] >= cfg.high_alpha_min]
    mmd = low_high_mmd(inputs.neurons, inputs.clusters, main, cfg.low_alpha_max,
                       cfg.high_alpha_min, cfg.mmd_permutations, cfg.mmd_seed,
                       cfg.mmd_bandwidth)
    lo, hi = _group(low), _group(high)
    others = []
    if inputs.paper_runs is not None:
        for r in inputs.paper_runs.sort_values("run_id").itertuples():
            others.append({"run_id": r.run_id, "alpha": r.attn_rate, "n_layers": r.n_layers,
                           "r2": r.median_r2, "fitted": r.fitted_share, "freqs": r.n_freqs,
                           "disc": r.disc_share, "cka_disc": r.cka_disc,
                           "cka_torus": r.cka_torus})
    ab = None
    if len(paper_models) == 2 and inputs.paper_neurons is not None:
        ids = [m["run_id"] for m in paper_models]  # Model A (α = 0) first
        pair = pd.DataFrame({"run_id": ids, "attn_rate": [0.0, 1.0]})
        ab = low_high_mmd(inputs.paper_neurons, inputs.paper_clusters, pair, 0.0, 1.0, 0,
                          cfg.mmd_seed, cfg.mmd_bandwidth)
    alpha_fig, phase_fig, freqs_fig = NEURON_FIGURES
    return {
        "paper_ab_mmd": ab,
        # Shared initial weights tie the runs of a (width, seed) group across α: the
        # permutation test then treats dependent runs as exchangeable.
        "shared_init": bool(len(main)) and not runs.loc[runs["run_id"].isin(main["run_id"]),
                                                        "init_per_run"].all(),
        "n_runs": len(main), "n_neurons": int(main["n_neurons"].sum()),
        "widths": ", ".join(str(int(w)) for w in sorted(main["width"].unique())),
        "rows": _grid_rows(main), "low": lo, "high": hi,
        "low_max": cfg.low_alpha_max, "high_min": cfg.high_alpha_min,
        "mmd": mmd, "finding": _finding(mmd, lo, hi),
        "challenge": {"cka0": CHALLENGE_CKA["0"], "cka1": CHALLENGE_CKA["1"],
                      "mmd": CHALLENGE_MMD},
        "paper_models": paper_models, "paper_all": others,
        "fig_alpha": figures.get(alpha_fig), "fig_phase": figures.get(phase_fig),
        "fig_freqs": figures.get(freqs_fig),
        "cfg": cfg,
    }
