"""The "Two stories or one?" figures, pure functions of the neuron tables (stage neurons) and the
runs table: the main grid only (1-layer transformers without ablations, as figures 1 and 2).

- :func:`disc_cka_figure`: per width, the share of a run's clusters judged disc, and its layer-1
  CKA to the disc and torus templates, against α (one point per run, the line through the
  means per α), the fitted boundary's transition α at that width marked;
- :func:`phase_diff_figure`: φ_L − φ_R, and the phase alignment (φ_L − φ_R minus its cluster's
  circular mean), of the fitted neurons of low-α against high-α runs;
- :func:`freqs_width_figure`: the number of frequencies (judged clusters) a run keeps against
  width, coloured by α (the "survival" view of Ding et al. 2024, arXiv 2405.17420).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from clockpizza.figures.plots import BOUNDARY_COLOUR, LABELS, _figure, _scatter
from clockpizza.results.neuron_stats import phase_alignment
from clockpizza.results.selection import main_runs

NEURON_FIGURES = ("fig_neurons_alpha", "fig_neurons_phase", "fig_neurons_freqs")
LOW_COLOUR, HIGH_COLOUR = "tab:orange", "tab:blue"  # as the pizza and clock of the dynamics


def main_neuron_runs(neuron_runs: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``neuron_runs`` of the main grid, sorted by width, α, seed."""
    keep = main_runs(runs)["run_id"]
    return neuron_runs[neuron_runs["run_id"].isin(keep)].sort_values(
        ["width", "attn_rate", "seed", "run_id"], ignore_index=True)


def disc_cka_figure(neuron_runs: pd.DataFrame, runs: pd.DataFrame,
                    transitions: Mapping[int, float] | None = None) -> Figure:
    """Disc share and layer-1 CKAs against α, one row per width (module docstring).

    ``transitions`` maps width to the fitted boundary's transition α there (NaN or absent:
    not marked; outside [0, 1]: not marked either, the boundary lies off the grid).
    """
    df = main_neuron_runs(neuron_runs, runs)
    widths = sorted(df["width"].unique())
    fig = _figure((10, 3.0 * max(len(widths), 1) + 0.4))
    axes = fig.subplots(max(len(widths), 1), 2, squeeze=False)
    for row, w in zip(axes, widths, strict=False):
        at = df[df["width"] == w]
        means = at.groupby("attn_rate")[["disc_share", "cka_disc", "cka_torus"]].mean()
        ax = row[0]
        ax.scatter(at["attn_rate"], at["disc_share"], color="0.3", s=20, gid=f"disc-{w}")
        ax.plot(means.index, means["disc_share"], color="0.3")
        ax.set(ylim=(-0.05, 1.05), ylabel="share of clusters: disc",
               title=f"width {w}: disc share")
        ax = row[1]
        for col, colour, label in (("cka_disc", "tab:green", "disc template"),
                                   ("cka_torus", "tab:purple", "torus template")):
            ax.scatter(at["attn_rate"], at[col], color=colour, s=20, gid=f"{col}-{w}")
            ax.plot(means.index, means[col], color=colour, label=label)
        ax.set(ylim=(0.4, 1.02), ylabel="layer-1 CKA", title=f"width {w}: CKA to templates")
        ax.legend(loc="lower left", fontsize=7, frameon=False)
        t = (transitions or {}).get(int(w), math.nan)
        for ax in row:
            ax.set_xlabel(LABELS["attn_rate"])
            ax.set_xlim(-0.05, 1.05)
            if 0 <= t <= 1:
                ax.axvline(t, color=BOUNDARY_COLOUR, linestyle="--", linewidth=1,
                           gid=f"transition-{w}")
    fig.suptitle("First-layer clusters against attention rate (dashed: the fitted pizza/clock "
                 "boundary's transition α)")
    return fig


def phase_diff_figure(neurons: pd.DataFrame, clusters: pd.DataFrame, runs: pd.DataFrame,
                      low_alpha_max: float, high_alpha_min: float) -> Figure:
    """Histograms (density, 36 bins on (−π, π]) of the fitted neurons' φ_L − φ_R and phase
    alignment, the main grid's low-α runs against its high-α runs."""
    main = main_runs(runs)[["run_id", "attn_rate"]]
    aligned = phase_alignment(neurons, clusters).merge(main, on="run_id")
    groups = {f"α ≤ {low_alpha_max:g}": (aligned["attn_rate"] <= low_alpha_max, LOW_COLOUR),
              f"α ≥ {high_alpha_min:g}": (aligned["attn_rate"] >= high_alpha_min, HIGH_COLOUR)}
    bins = np.linspace(-np.pi, np.pi, 37)
    fig = _figure((10, 3.4))
    axes = fig.subplots(1, 2)
    for ax, col, title in ((axes[0], "phase_diff", "φ_L − φ_R"),
                           (axes[1], "alignment", "φ_L − φ_R minus its cluster's mean")):
        for label, (mask, colour) in groups.items():
            part = aligned[mask]
            n_runs = part["run_id"].nunique()
            if part.empty:
                continue
            ax.hist(part[col], bins=bins, density=True, histtype="step", color=colour,
                    linewidth=1.5, label=f"{label}: {n_runs} runs, {len(part)} neurons",
                    gid=f"{col}-{label}")
        ax.set(xlim=(-np.pi, np.pi), xlabel=f"{title} (radians)", ylabel="density", title=title)
        ax.legend(loc="upper left", fontsize=7, frameon=False)
    fig.suptitle("Phase differences of fitted first-layer neurons (main grid)")
    return fig


def freqs_width_figure(neuron_runs: pd.DataFrame, runs: pd.DataFrame) -> Figure:
    """Frequencies kept (judged clusters) against width, one point per run coloured by α,
    small horizontal offsets by α so that equal counts stay visible."""
    df = main_neuron_runs(neuron_runs, runs)
    fig = _figure((6, 3.6))
    ax = fig.subplots()
    widths = np.array(sorted(df["width"].unique()), dtype=float)
    offset = (df["attn_rate"] - 0.5) * 0.15  # in log2(width) units
    _scatter(ax, df.assign(x=np.log2(df["width"]) + offset), "x", "n_freqs", "attn_rate",
             size=25)
    means = df.groupby("width")["n_freqs"].mean()
    ax.plot(np.log2(means.index.to_numpy(dtype=float)), means.to_numpy(), color="0.3",
            label="mean over runs")
    ax.set_xticks(np.log2(widths), [f"{w:g}" for w in widths])
    top = int(df["n_freqs"].max()) if len(df) else 1
    ax.set(xlabel="width (d_model)", ylabel="frequencies kept", ylim=(-0.3, top + 1.3),
           title="Frequencies a run keeps in its first layer")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper left", fontsize=7, frameon=False)
    return fig
