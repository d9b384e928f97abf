"""Figures as pure functions of the runs table (never of weights, never torch).

Every function takes the table and returns a matplotlib Figure; :func:`save` writes PNG and SVG
that are byte-identical for identical data (no dates, fixed SVG hash salt, Agg backend).
"""

from __future__ import annotations

import textwrap
from functools import partial
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from clockpizza.io.table import atomic_write
from clockpizza.results.boundary import Boundary, why_no_boundary
from clockpizza.results.selection import main_runs, nearest_width

GS, DI = "gradient_symmetricity", "distance_irrelevance"
LABELS = {GS: "gradient symmetricity", DI: "distance irrelevance", "attn_rate": "attention rate α"}
# A figure not yet drawn: a plotting function of this package with the tables it draws
# (``partial(fixed_width, runs, 128, published)``); calling it draws. The render stage keys each
# figure's bytes by its recipe (clockpizza.figures.cache) and draws only what changed.
FigureRecipe = partial[Figure]
CMAP = "viridis"
SORT = ["width", "attn_rate", "seed", "run_id"]
BOUNDARY_COLOUR = "crimson"
# Grid points where more than this share of runs is non-circular get an 'x': the paper leaves
# such runs out of its diagrams, and their GS/DI describe no circular algorithm.
NON_CIRCULAR_MARK = 0.5


def house_style() -> None:
    """Every figure's theme, applied before each one is drawn."""
    sns.set_theme(style="whitegrid", context="paper")
    mpl.rcParams["svg.hashsalt"] = "clockpizza"  # SVG element ids are random unless salted


def _figure(figsize: tuple[float, float]) -> Figure:
    """A pyplot-free Figure (Agg canvas, no global figure manager) in the house style."""
    house_style()
    return Figure(figsize=figsize, layout="constrained")


def _scatter(ax: Axes, df: pd.DataFrame, x: str, y: str, hue: str, *, marker: str = "o",
             size: float = 40) -> None:
    norm = Normalize(0.0, 1.0)
    sc = ax.scatter(df[x], df[y], c=df[hue], cmap=CMAP, norm=norm, s=size, marker=marker,
                    edgecolors="0.3", linewidths=0.4)
    ax.figure.colorbar(sc, ax=ax, label=LABELS[hue])


PAPER_COLOUR = "0.55"


def fixed_width(runs: pd.DataFrame, width: int,
                published: pd.DataFrame | None = None) -> Figure:
    """Figure 1 (docs/specification.md, "Figures"): DI against α coloured by GS, and GS
    against α coloured by DI.

    Draws every 1-layer transformer run without ablations (:func:`main_runs`) at the grid width
    nearest to ``width`` (one point per run). With ``published`` (the paper's width-128 runs,
    :func:`clockpizza.results.paper_compare.read_published_runs`) those are drawn behind ours
    as small grey points: same metrics (GS on the paper's triples, DI of the largest incorrect
    logit), so the two clouds compare directly.
    """
    runs = main_runs(runs)
    w = nearest_width(runs, width)
    df = runs[runs["width"] == w].sort_values(SORT)
    fig = _figure((9, 3.9 if published is not None else 3.6))
    axes = fig.subplots(1, 2)
    for ax, (y, hue) in zip(axes, ((DI, GS), (GS, DI)), strict=True):
        if published is not None:
            ax.scatter(published["attn_rate"], published[y], s=5, c=PAPER_COLOUR, alpha=0.35,
                       linewidths=0, gid="paper-runs", zorder=1, rasterized=True)
        _scatter(ax, df, "attn_rate", y, hue)
        nc = df[df["phase"] == "non-circular"]
        if len(nc):
            mark_non_circular(ax, nc["attn_rate"], nc[y], size=30)
        ax.set(xlabel=LABELS["attn_rate"], ylabel=LABELS[y], xlim=(-0.05, 1.05), ylim=(0, 1.05))
    fig.suptitle(f"1 layer, width {w}: {len(df)} runs "
                 f"({df['seed'].nunique()} seeds × {df['attn_rate'].nunique()} attention rates)"
                 + ("; x: non-circular" if len(nc) else ""))
    if published is not None:
        handle = Line2D([], [], color=PAPER_COLOUR, marker="o", linestyle="", markersize=3)
        fig.legend([handle], [f"the paper's published runs, width 128 ({len(published)})"],
                   loc="outside lower center", frameon=False)
    return fig


def grid_means(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean GS and DI over seeds at each (width, α) grid point: the data of figure 2.

    Also ``runs`` (how many runs the point averages) and ``non_circular`` (their share labelled
    non-circular).
    """
    g = runs.assign(non_circular=(runs["phase"] == "non-circular").astype(float))
    by = g.groupby(["width", "attn_rate"], sort=True)
    out = by[[GS, DI, "non_circular"]].mean()
    out.insert(2, "runs", by.size())
    return out.reset_index()


def per_point(counts: pd.Series) -> str:
    """'1 seed per point', 'mean over 3 seeds per point' or 'mean over 1–3 seeds per point'."""
    lo, hi = int(counts.min()), int(counts.max())
    if hi == 1:
        return "1 seed per point"
    return f"mean over {lo} seeds per point" if lo == hi else \
        f"mean over {lo}–{hi} seeds per point"


def mark_non_circular(ax: Axes, x: pd.Series, y: pd.Series, size: float = 40) -> None:
    """Overlay an 'x' on points whose runs are (mostly) non-circular."""
    ax.scatter(x, y, marker="x", c="0.1", s=size, linewidths=1.0, gid="non-circular",
               zorder=3)


def draw_boundary(ax: Axes, b: Boundary, log2_lo: float, log2_hi: float) -> bool:
    """The fitted 50 % line α*(w) and its bootstrap band, drawn over log₂ width lo..hi.

    Returns whether there was a band to draw (none without enough bootstrap draws).
    """
    y = np.linspace(log2_lo, log2_hi, 41)  # [point], log2 width
    x = np.array([b.transition_attn_rate(float(w)) for w in 2.0**y])
    lo, hi = b.band(2.0**y)
    has_band = bool(np.all(np.isfinite(lo)))
    if has_band:
        ax.fill_betweenx(y, lo, hi, color=BOUNDARY_COLOUR, alpha=0.2, linewidth=0,
                         gid="phase-boundary-band", zorder=2)
    ax.plot(x, y, color=BOUNDARY_COLOUR, linewidth=2, gid="phase-boundary", zorder=4)
    return has_band


def phase_diagram(runs: pd.DataFrame, boundary: Boundary | None) -> Figure:
    """Figure 2 (docs/specification.md, "Figures"): attention rate × log₂ width, coloured by
    GS and by DI (seed means).

    Draws the 1-layer transformer runs without ablations (:func:`main_runs`), the fitted
    pizza/clock boundary ``boundary`` (:func:`clockpizza.results.boundary.fit_main` of
    ``runs``, fitted by the summarise stage) with its 95 % bootstrap band, or says why there
    is none, and an 'x' on
    grid points where most runs are non-circular.
    """
    runs = main_runs(runs)
    means = grid_means(runs)
    means = means.assign(log2_width=np.log2(means["width"]))
    marked = means[means["non_circular"] > NON_CIRCULAR_MARK]
    fig = _figure((9, 4.0))
    axes = fig.subplots(1, 2)
    widths = sorted(means["width"].unique())
    lo, hi = np.log2(widths[0]) - 0.5, np.log2(widths[-1]) + 0.5
    for ax, hue in zip(axes, (GS, DI), strict=True):
        _scatter(ax, means, "attn_rate", "log2_width", hue, marker="s", size=90)
        if len(marked):
            mark_non_circular(ax, marked["attn_rate"], marked["log2_width"])
        if boundary is not None:
            has_band = draw_boundary(ax, boundary, lo, hi)
        else:
            ax.text(0.5, 0.5, textwrap.fill("no boundary fitted: " + why_no_boundary(runs), 36),
                    transform=ax.transAxes, ha="center", va="center", fontsize=8,
                    in_layout=False, gid="no-boundary",
                    bbox={"facecolor": "white", "alpha": 0.9, "edgecolor": "0.5"})
        ax.set(xlabel=LABELS["attn_rate"], ylabel="width", xlim=(-0.05, 1.05),
               title=f"coloured by {LABELS[hue]}")
        ax.set_yticks(np.log2(widths), [str(w) for w in widths])
        ax.set_ylim(lo, hi)
    handles, labels = [], []
    if boundary is not None:
        band = ", 95 % bootstrap band" if has_band else ""
        handles.append(Line2D([], [], color=BOUNDARY_COLOUR, linewidth=2))
        labels.append(f"fitted boundary P(pizza) = ½ ({boundary.n_runs} circular runs{band})")
    if len(marked):
        handles.append(Line2D([], [], color="0.1", marker="x", linestyle=""))
        labels.append("most runs non-circular (left out of the fit)")
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=len(handles),
                   frameon=False)
    fig.suptitle(f"1 layer: {len(runs)} runs, {per_point(means['runs'])}")
    return fig


def save(fig: Figure, stem: str | Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` byte-stably (atomic)."""
    stem = Path(stem)
    paths = []
    for ext, meta in ((".png", {"Software": None}), (".svg", {"Date": None, "Creator": None})):
        path = stem.with_suffix(ext)
        atomic_write(path, lambda t, ext=ext, meta=meta: fig.savefig(t, format=ext[1:], dpi=150,
                                                                metadata=meta))
        paths.append(path)
    return paths
