"""The training-dynamics figure as a pure function of the dynamics and runs tables.

GS and DI (median over seeds, band from the lowest to the highest seed) against the step, one
line per attention rate, and the share of runs in each phase against the step: one row of
panels per width of the main grid (1-layer transformers without ablations).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from clockpizza.figures.plots import CMAP, DI, GS, LABELS, _figure
from clockpizza.results.selection import main_runs

PHASE_COLOURS = {"pizza": "tab:orange", "clock": "tab:blue", "non-circular": "0.5"}


def has_dynamics_data(dynamics: pd.DataFrame, runs: pd.DataFrame) -> bool:
    """Whether the main grid's runs kept at least two snapshots each."""
    main = main_runs(runs)
    d = dynamics[dynamics["run_id"].isin(main["run_id"])]
    return not d.empty and d["step"].nunique() >= 2


def dynamics_figure(dynamics: pd.DataFrame, runs: pd.DataFrame) -> Figure:
    """GS, DI and the phase shares over training (see the module docstring)."""
    main = main_runs(runs)[["run_id", "width", "attn_rate", "seed"]]
    df = dynamics.merge(main, on="run_id").sort_values(["width", "attn_rate", "seed", "step"])
    widths = sorted(df["width"].unique())
    fig = _figure((12, 3.2 * len(widths) + 0.6))
    axes = fig.subplots(len(widths), 3, squeeze=False)
    norm = Normalize(0.0, 1.0)
    cmap = ScalarMappable(norm=norm, cmap=CMAP)
    for row, w in zip(axes, widths, strict=True):
        at = df[df["width"] == w]
        for ax, col in zip(row[:2], (GS, DI), strict=True):
            for alpha, g in at.groupby("attn_rate", sort=True):
                by = g.groupby("step")[col]
                steps = np.array(sorted(g["step"].unique()))
                colour = cmap.to_rgba(alpha)
                ax.fill_between(steps, by.min().to_numpy(), by.max().to_numpy(), color=colour,
                                alpha=0.15, linewidth=0)
                ax.plot(steps, by.median().to_numpy(), color=colour, marker="o", markersize=3,
                        linewidth=1.5, gid=f"{col}-alpha-{alpha:g}")
            ax.set(xscale="symlog", ylim=(0, 1.05), ylabel=LABELS[col],
                   title=f"width {w}: {LABELS[col]}")
            ax.set_xscale("symlog", linthresh=100)
        ax = row[2]
        share = (at.assign(n=1).pivot_table(index="step", columns="phase", values="n",
                                            aggfunc="sum", fill_value=0))
        share = share.div(share.sum(axis=1), axis=0)
        for phase, colour in PHASE_COLOURS.items():
            if phase in share.columns:
                ax.plot(share.index, share[phase], color=colour, marker="o", markersize=3,
                        label=phase, gid=f"share-{phase}")
        ax.set(ylim=(-0.02, 1.02), ylabel="share of runs", title=f"width {w}: phase (GS/DI)")
        ax.set_xscale("symlog", linthresh=100)
        ax.legend(loc="center right", fontsize=7, frameon=False)
    for ax in axes[-1]:
        ax.set_xlabel("training step")
    fig.colorbar(cmap, ax=axes[:, :2].ravel().tolist(), label=LABELS["attn_rate"],
                 shrink=0.8)
    n_seeds = df.groupby(["width", "attn_rate"])["seed"].nunique()
    fig.suptitle(f"Training dynamics: median over {int(n_seeds.min())}–{int(n_seeds.max())} "
                 "seeds per line (band: lowest to highest seed)")
    return fig
