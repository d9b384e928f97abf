"""The Model A (pizza) / Model B (clock) figures, specification figure 3, as pure functions of
tables.

Inputs are the example tables of the mechanism stage (``metrics/examples/*.parquet``) and the
circles table (``metrics/circles.parquet``); never weights, never torch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from clockpizza.figures.plots import _figure

# The authors' notebook: Model A is the pizza (α = 0), Model B the clock (α = 1).
TITLES = {"pizza": "Model A (pizza example)", "clock": "Model B (clock example)"}


def around_circle(p: int, k: int) -> np.ndarray:
    """Tokens in their order around a circle of frequency k: t_j = j · k⁻¹ mod p.

    Token t sits at angle 2πkt/p, so stepping by k⁻¹ moves one notch of 2π/p around the
    circle. Falls back to 0..p-1 when k has no inverse mod p.
    """
    try:
        inv = pow(k, -1, p)
    except ValueError:
        return np.arange(p)
    return (np.arange(p) * inv) % p


def delta_order(p: int, k: int) -> np.ndarray:
    """The values of δ = a − b (mod p) sorted by k·δ (mod p) taken in (−p/2, p/2].

    A pizza of frequency k makes the correct logit a function of |cos(πkδ/p)|
    (docs/specification.md,
    Q_pizza at c = a + b), which in this order is one smooth bump centred on the middle row: the
    paper's reordering of the correct-logit table.
    """
    d = np.arange(p)
    m = (k * d) % p
    signed = np.where(m > p // 2, m - p, m)
    return d[np.lexsort((d, signed))]


def logit_grid(correct_logits: pd.DataFrame, p: int, k: int) -> np.ndarray:
    """The correct-logit table ``[row, s]``: row j holds δ = ``delta_order(p, k)[j]``."""
    grid = np.full((p, p), np.nan)
    grid[correct_logits["delta"].to_numpy(), correct_logits["s"].to_numpy()] = (
        correct_logits["logit"].to_numpy())
    return grid[delta_order(p, k)]


def attention_grid(attention: pd.DataFrame, p: int, head: int, layer: int = 0,
                   key: int = 0) -> np.ndarray:
    """Weight of the last position on position ``key`` as a table ``[a, b]``, natural order."""
    sel = attention[(attention["head"] == head) & (attention["layer"] == layer)
                    & (attention["key"] == key)]
    grid = np.full((p, p), np.nan)
    grid[sel["a"].to_numpy(), sel["b"].to_numpy()] = sel["weight"].to_numpy()
    return grid


def _one(df: pd.DataFrame, role: str, name: str) -> pd.DataFrame:
    out = df[df["role"] == role]
    if out.empty:
        raise ValueError(f"no {name} rows for the {role} example; rerun `dvc repro mechanism`")
    return out


def leading_frequency(circles: pd.DataFrame, role: str) -> int:
    """The frequency the tables are ordered by: the largest circle of the role's own type
    (a pizza's band shows only when ordered by a pizza circle's k), else the largest circle."""
    if circles.empty:
        return 1
    own = circles[circles["type"] == role]
    pick = own if not own.empty else circles
    return int(pick.loc[pick["var_share"].idxmax(), "freq"])


def example_figure(role: str, embedding: pd.DataFrame, correct_logits: pd.DataFrame,
                   attention: pd.DataFrame, circles: pd.DataFrame, run: pd.Series) -> Figure:
    """One example model: its circles (top), its correct logits and attention (bottom).

    ``circles`` is circles.parquet (the example's rows are picked by run_id), ``run`` its row
    of the runs table. Circle panels plot each token at (PC a, PC b), numbered from 1 as usual
    in figures (the table's pc columns count from 0). The correct-logit rows and the attention
    axes are ordered around the circle of :func:`leading_frequency`.
    """
    emb = _one(embedding, role, "embedding")
    logits = _one(correct_logits, role, "correct-logit")
    attn = _one(attention, role, "attention")
    run_id = str(emb["run_id"].iloc[0])
    p = int(emb["token"].max()) + 1
    mine = circles[circles["run_id"] == run_id].sort_values("circle")
    heads = sorted(attn["head"].unique())
    k = leading_frequency(mine, role)

    n_top, n_bottom = max(len(mine), 1), len(heads) + 1
    fig = _figure((3.3 * max(n_top, n_bottom + 0.4), 7.4))
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.1, 1])
    coords = emb.pivot(index="token", columns="pc", values="value").sort_index()
    panels = top.subplots(1, n_top, squeeze=False)[0]
    for ax, c in zip(panels, mine.itertuples(), strict=False):
        x, y = coords[c.pc_a].to_numpy(), coords[c.pc_b].to_numpy()
        ring = np.append(around_circle(p, c.freq), around_circle(p, c.freq)[0])
        ax.plot(x[ring], y[ring], color="0.75", lw=0.6, zorder=1)
        ax.scatter(x, y, c=np.arange(p), cmap="twilight", s=18, edgecolors="0.3",
                   linewidths=0.3, zorder=2)
        for t in range(p):
            ax.annotate(str(t), (x[t], y[t]), fontsize=4.5, ha="center", va="center",
                        xytext=(0, 5), textcoords="offset points", color="0.25")
        ax.set_aspect("equal", adjustable="box")
        ax.grid(False)
        ax.set(xlabel=f"PC {c.pc_a + 1}", ylabel=f"PC {c.pc_b + 1}", xticks=[], yticks=[])
        ax.set_title(f"circle {c.circle + 1}: k = {c.freq}, {c.type} "
                     f"({c.var_share:.0%} of variance)\nFVE clock {c.fve_clock:.2f} · "
                     f"pizza {c.fve_pizza:.2f} · acc {c.fve_acc:.2f}", fontsize=7)
    if mine.empty:
        panels[0].text(0.5, 0.5, "no circle found", ha="center", va="center")
        panels[0].set_axis_off()
    seed = run.get("seed")
    seed_txt = "" if seed is None or pd.isna(seed) else f", seed {seed}"
    top.suptitle(f"{TITLES[role]}: run {run_id}, α = {run['attn_rate']:g}, "
                 f"width {run['width']}{seed_txt} — GS "
                 f"{run['gradient_symmetricity']:.2f}, DI {run['distance_irrelevance']:.2f}, "
                 f"phase {run['phase']}", fontsize=9)

    axes = bottom.subplots(1, n_bottom)
    order = delta_order(p, k)
    im = axes[0].imshow(logit_grid(logits, p, k), origin="lower", cmap="viridis",
                        interpolation="nearest")
    ticks = np.linspace(0, p - 1, 5).round().astype(int)
    axes[0].set_yticks(ticks, [str(order[t]) for t in ticks])
    axes[0].set(xlabel="a + b (mod p)", ylabel=f"a − b, ordered by {k}(a − b) mod p",
                title="correct logit")
    bottom.colorbar(im, ax=axes[0], shrink=0.8)
    ring = around_circle(p, k)
    for ax, h in zip(axes[1:], heads, strict=True):
        grid = attention_grid(attn, p, h)[np.ix_(ring, ring)]
        img = ax.imshow(grid, origin="lower", cmap="magma", vmin=0.0, vmax=1.0,
                        interpolation="nearest")
        ax.set_xticks(ticks, [str(ring[t]) for t in ticks])
        ax.set_yticks(ticks, [str(ring[t]) for t in ticks])
        ax.set(xlabel=f"b, around circle k = {k}", ylabel=f"a, around circle k = {k}",
               title=f"head {h}: weight on a")
    for ax in axes:
        ax.grid(False)
    bottom.colorbar(img, ax=axes[1:].tolist(), shrink=0.8,
                    label="attention of the last position on a")
    return fig


def circles_markdown(circles: pd.DataFrame, run_id: str) -> str:
    """The circles of one run as a markdown table (components numbered from 1)."""
    mine = circles[circles["run_id"] == run_id].sort_values("circle")
    rows = ["| circle | PCs | k | variance share | circularity | FVE clock | FVE pizza | "
            "FVE acc | type |", "|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for c in mine.itertuples():
        rows.append(f"| {c.circle + 1} | {c.pc_a + 1}, {c.pc_b + 1} | {c.freq} | "
                    f"{c.var_share:.3f} | {c.circularity:.3f} | {c.fve_clock:.3f} | "
                    f"{c.fve_pizza:.3f} | {c.fve_acc:.3f} | {c.type} |")
    if mine.empty:
        rows.append("| – | – | – | – | – | – | – | – | no circle found |")
    return "\n".join(rows)
