"""The appendix figures (specification figure 4, paper appendix) as pure functions of the runs
table.

- :func:`layers_figure`: GS and DI per number of transformer blocks, one column per depth;
- :func:`ablations_figure`: the same for the ``diff_vocab`` / ``eqn_sign`` ablations, on vs off;
- :func:`mlp_figure`: GS and DI of the attention-free family, one bar per model A..X and one
  point per run.

Each figure comes with a ``has_*`` test: a figure whose data is not in the table is not drawn
(the report says which command produces it), never drawn empty. Like
:mod:`clockpizza.figures.plots`, nothing here imports pyplot or torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from clockpizza.figures.plots import (
    CMAP,
    DI,
    GS,
    LABELS,
    NON_CIRCULAR_MARK,
    SORT,
    _figure,
    grid_means,
    mark_non_circular,
    per_point,
)
from clockpizza.results.selection import (
    NON_CIRCULAR,
    ablation_label,
    layers_label,
    mlp_order,
    mlp_runs,
    transformers,
    unablated,
)

# Point colours of the MLP figure, one per phase; non-circular runs are also drawn as an 'x'.
PHASE_COLOURS = {"pizza": "#d95f02", "clock": "#1b76b4", NON_CIRCULAR: "0.35"}
BAR_COLOUR = "0.85"
# (y metric, colour metric) of the two rows when every panel has a single width: as figure 1.
SCATTER_ROWS = ((GS, DI), (DI, GS))


# --------------------------------------------------------------------------------------------
# Which runs each figure draws.


Panel = tuple[str, pd.DataFrame]  # (title, the runs it draws)


def layer_panels(runs: pd.DataFrame) -> list[Panel]:
    """One (title, runs) panel per depth: transformers without ablations, by ``n_layers``."""
    u = unablated(runs)
    return [(layers_label(int(n)), g) for n, g in u.groupby("n_layers", sort=True)]


def has_layers_data(runs: pd.DataFrame) -> bool:
    """Drawn when the table holds transformers with more than one block (paper appendix)."""
    return bool((unablated(runs)["n_layers"] != 1).any())


# Ablation settings (diff_vocab, eqn_sign) in drawing order: off first, then each alone, both.
VARIANTS = ((False, False), (True, False), (False, True), (True, True))


def ablation_panels(runs: pd.DataFrame) -> list[tuple[tuple[bool, bool], str, Panel]]:
    """(setting, depth label, panel) per ablation setting and depth, at the depths that have an
    ablated run; runs without ablation at those depths are the "off" panels. Depths are never
    pooled."""
    t = transformers(runs)
    ablated = t[t["diff_vocab"] | t["eqn_sign"]]
    out = []
    for n in sorted(ablated["n_layers"].unique()):
        at = t[t["n_layers"] == n]
        depth = layers_label(int(n))
        for dv, es in VARIANTS:
            g = at[(at["diff_vocab"] == dv) & (at["eqn_sign"] == es)]
            if len(g):
                out.append(((dv, es), depth, (f"{ablation_label(dv, es)}, {depth}", g)))
    return out


def has_ablations_data(runs: pd.DataFrame) -> bool:
    """Drawn when some transformer run has ``diff_vocab`` or ``eqn_sign`` switched on."""
    t = transformers(runs)
    return bool((t["diff_vocab"] | t["eqn_sign"]).any())


def has_mlp_data(runs: pd.DataFrame) -> bool:
    """Drawn when the table holds runs of the attention-free family (models A..X)."""
    return not mlp_runs(runs).empty


# --------------------------------------------------------------------------------------------
# GS and DI panels of transformers: against α (one width) or over α × width (several).


SHORT = {GS: "GS", DI: "DI"}


def _colourbar(fig: Figure, axes: Sequence[Axes], metric: str) -> None:
    sm = ScalarMappable(norm=Normalize(0.0, 1.0), cmap=CMAP)
    # A figure row is too short for the full name beside its colourbar; the title spells it.
    fig.colorbar(sm, ax=list(axes), label=SHORT[metric], shrink=0.9)


def _scatter_panel(ax: Axes, df: pd.DataFrame, y: str, hue: str) -> None:
    df = df.sort_values(SORT)
    ax.scatter(df["attn_rate"], df[y], c=df[hue], cmap=CMAP, norm=Normalize(0.0, 1.0), s=36,
               edgecolors="0.3", linewidths=0.4, gid="runs")
    nc = df[df["phase"] == NON_CIRCULAR]
    if len(nc):
        mark_non_circular(ax, nc["attn_rate"], nc[y], size=30)
    ax.set(xlim=(-0.05, 1.05), ylim=(0.0, 1.05))


def _map_panel(ax: Axes, means: pd.DataFrame, hue: str, widths: list[int]) -> None:
    y = np.log2(means["width"])
    ax.scatter(means["attn_rate"], y, c=means[hue], cmap=CMAP, norm=Normalize(0.0, 1.0),
               marker="s", s=70, edgecolors="0.3", linewidths=0.4, gid="runs")
    marked = means["non_circular"] > NON_CIRCULAR_MARK
    if marked.any():
        mark_non_circular(ax, means.loc[marked, "attn_rate"], y[marked])
    ax.set_yticks(np.log2(widths), [str(w) for w in widths])
    ax.set(xlim=(-0.05, 1.05), ylim=(np.log2(widths[0]) - 0.5, np.log2(widths[-1]) + 0.5))


def metric_panels(grid: list[list[Panel | None]], title: str) -> Figure:
    """GS and DI for a grid of panels: each row of ``grid`` becomes two figure rows (GS, DI).

    With a single width across all panels each run is a point against α (upper row: GS
    coloured by DI, lower row: DI coloured by GS, as figure 1); with several widths each
    (α, width) grid point is a square coloured by the seed mean (upper: GS, lower: DI, as
    figure 2). Non-circular runs, or grid points where most runs are, carry an 'x'. A ``None``
    cell leaves its place empty; every figure row has its own 0..1 colourbar.
    """
    panels = [cell for row in grid for cell in row if cell is not None]
    if not panels:
        raise ValueError("no runs to draw")
    widths = sorted({int(w) for _, df in panels for w in df["width"].unique()})
    as_map = len(widths) > 1
    means = {id(df): grid_means(df) for _, df in panels} if as_map else {}
    n_cols = max(len(row) for row in grid)
    fig = _figure((2.9 * n_cols + 1.6, 3.0 * len(grid) + 1.1))
    axes = fig.subplots(2 * len(grid), n_cols, squeeze=False, sharex=True, sharey=True)
    for g, row in enumerate(grid):
        for col in range(n_cols):
            cell = row[col] if col < len(row) else None
            for k, (y, hue) in enumerate(SCATTER_ROWS):
                ax = axes[2 * g + k, col]
                if cell is None:
                    ax.set_axis_off()
                    continue
                name, df = cell
                if as_map:
                    _map_panel(ax, means[id(df)], (GS, DI)[k], widths)
                else:
                    _scatter_panel(ax, df, y, hue)
                if k == 0:
                    ax.set_title(f"{name}: {len(df)} runs", fontsize=9)
                ax.set_xlabel(LABELS["attn_rate"] if 2 * g + k == 2 * len(grid) - 1 else "")
                ax.tick_params(labelbottom=2 * g + k == 2 * len(grid) - 1)
                if col == 0:
                    ax.set_ylabel("width" if as_map else SHORT[y])
    for r in range(2 * len(grid)):
        metric = (GS, DI)[r % 2] if as_map else SCATTER_ROWS[r % 2][1]
        _colourbar(fig, axes[r, :], metric)
    n_runs = sum(len(df) for _, df in panels)
    if as_map:
        counts = pd.concat([m["runs"] for m in means.values()])
        how = (f"squares: GS (upper rows) and DI (lower rows), {per_point(counts)}; "
               "x: most runs non-circular")
    else:
        how = (f"width {widths[0]}, one point per run: GS coloured by DI (upper rows), DI "
               "coloured by GS (lower rows); x: non-circular")
    fig.suptitle(f"{title}: {n_runs} runs\n{how}\n"
                 f"GS: {LABELS[GS]}, DI: {LABELS[DI]}", fontsize=10)
    return fig


def layers_figure(runs: pd.DataFrame) -> Figure:
    """Appendix: GS and DI against α (or over α × width) for each number of layers present."""
    return metric_panels([list(layer_panels(runs))], "Transformers by depth, no ablation")


def ablations_figure(runs: pd.DataFrame) -> Figure:
    """Appendix: GS and DI with ``diff_vocab`` / ``eqn_sign`` on and off; a row per depth."""
    rows: dict[str, list[Panel | None]] = {}
    for variant, depth, panel in ablation_panels(runs):
        rows.setdefault(depth, [None] * len(VARIANTS))[VARIANTS.index(variant)] = panel
    used = [i for i in range(len(VARIANTS)) if any(r[i] is not None for r in rows.values())]
    return metric_panels([[r[i] for i in used] for r in rows.values()], "Ablations")


# --------------------------------------------------------------------------------------------
# The attention-free family: a bar (mean) and one point per run for each model A..X.


def mlp_categories(runs: pd.DataFrame) -> pd.DataFrame:
    """The MLP runs with a ``category`` (the model letter, plus its width if there are several)
    and ``x`` (the category's position), in plotting order."""
    m = mlp_runs(runs).copy()
    order = mlp_order(m["family"])
    several = m["width"].nunique() > 1
    m["family"] = m["family"].astype(str)
    m["category"] = [f"{f}\nh={w}" if several else f
                     for f, w in zip(m["family"], m["width"], strict=True)]
    m["_rank"] = m["family"].map({f: i for i, f in enumerate(order)})
    m = m.sort_values(["_rank", "width", "seed", "run_id"]).drop(columns="_rank")
    cats = list(dict.fromkeys(m["category"]))
    m["x"] = m["category"].map({c: i for i, c in enumerate(cats)}).astype(float)
    return m.reset_index(drop=True)


def _offsets(m: pd.DataFrame) -> np.ndarray:
    """Deterministic horizontal spread of the runs of one category (no random jitter)."""
    rank = m.groupby("category", sort=False).cumcount().to_numpy(dtype=float)
    size = m.groupby("category", sort=False)["run_id"].transform("size").to_numpy(dtype=float)
    return np.where(size > 1, (rank / np.maximum(size - 1, 1) - 0.5) * 0.5, 0.0)


def mlp_figure(runs: pd.DataFrame) -> Figure:
    """Appendix: GS (left) and DI (right) of each attention-free model; bar = mean over runs."""
    m = mlp_categories(runs)
    if m.empty:
        raise ValueError("no attention-free runs to draw")
    cats = list(dict.fromkeys(m["category"]))
    means = m.groupby("category", sort=False)[[GS, DI]].mean()
    x = m["x"].to_numpy() + _offsets(m)
    fig = _figure((max(6.0, 1.1 * len(cats) + 3.0), 3.8))
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, (GS, DI), strict=True):
        ax.bar(np.arange(len(cats)), means.loc[cats, metric].to_numpy(), width=0.7,
               color=BAR_COLOUR, edgecolor="0.5", gid="means", zorder=1)
        colours = [PHASE_COLOURS.get(ph, "0.35") for ph in m["phase"]]
        ax.scatter(x, m[metric], c=colours, s=26, edgecolors="0.2", linewidths=0.3, gid="runs",
                   zorder=2)
        nc = m["phase"] == NON_CIRCULAR
        if nc.any():
            mark_non_circular(ax, pd.Series(x[nc.to_numpy()]), m.loc[nc, metric], size=30)
        ax.set_xticks(np.arange(len(cats)), cats)
        ax.set(xlabel="attention-free model", ylabel=LABELS[metric], ylim=(0.0, 1.05),
               xlim=(-0.6, len(cats) - 0.4))
    present = [ph for ph in PHASE_COLOURS if (m["phase"] == ph).any()]
    handles = [Line2D([], [], marker="x" if ph == NON_CIRCULAR else "o", linestyle="",
                      color="0.1" if ph == NON_CIRCULAR else PHASE_COLOURS[ph],
                      markeredgecolor="0.1" if ph == NON_CIRCULAR else "0.2") for ph in present]
    fig.legend(handles, present, loc="outside lower center", ncols=len(present), frameon=False,
               title=None)
    n_seeds = m.groupby("category")["run_id"].size()
    fig.suptitle(f"Attention-free models: {len(m)} runs, {n_seeds.min()}–{n_seeds.max()} per "
                 "model (bar: mean; point: one run, coloured by phase)"
                 if n_seeds.min() != n_seeds.max() else
                 f"Attention-free models: {len(m)} runs, {n_seeds.min()} per model "
                 "(bar: mean; point: one run, coloured by phase)", fontsize=10)
    return fig
