"""report/README.md as a pure function of the runs table (numbers are never typed by hand).

The report reads like the results section of the paper: what was run, each figure with what it
shows and the numbers behind it, the fitted phase boundary, the appendix figures, where our
result differs from the paper's and why we think so, and the hardware. Each section is its own
function returning markdown; :func:`build_report` joins them. The paper's own numbers (quoted
from the paper, SPEC "What the paper found") are the constants ``PAPER_*`` below; every other
number is computed from the table. No dates, no timings taken here: identical inputs give
identical bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from clockpizza.figures import plots_appendix as appendix
from clockpizza.figures.example_plots import circles_markdown
from clockpizza.figures.plots import (
    DI,
    GS,
    NON_CIRCULAR_MARK,
    fixed_width,
    grid_means,
    nearest_width,
    per_point,
    phase_diagram,
)
from clockpizza.results.boundary import Boundary, fit_boundary, why_no_boundary
from clockpizza.results.phases import PHASES
from clockpizza.results.selection import main_runs, mlp_order, mlp_runs, transformers, unablated

# The paper's numbers (Zhong et al. 2023, section 3 and figures 1-2), for comparison only.
PAPER_STEPS = 20_000
PAPER_WIDTH = 128
PAPER_ALPHA_STAR = 0.6  # transition attention rate at width 128, "around 0.6"
PAPER_PIZZA = {GS: "≈ 0.99", DI: "≈ 0.3–0.4"}
PAPER_CLOCK = {GS: "≈ 0.5", DI: "≈ 0.85"}
PAPER_RUNS = "~14 000"

# Figure stems (files report/figures/<stem>.png|svg), in report order.
FIG1, FIG2 = "fig1_fixed_width", "fig2_phase_diagram"
LAYERS, ABLATIONS, MLP = "appendix_layers", "appendix_ablations", "appendix_mlp_family"
FIGURES = (FIG1, FIG2, LAYERS, ABLATIONS, MLP)
# The command that puts each figure's data into the table, named when a figure is not drawn.
# The grid axes n_layers, diff_vocab, eqn_sign and family are top-level list keys of
# params.yaml, like attn_rate (README, "Choosing what to run").
PRODUCE = {
    FIG1: "dvc exp run -S 'n_layers=[1]' -S 'family=[transformer]'",
    FIG2: "dvc exp run -S 'n_layers=[1]' -S 'family=[transformer]'",
    LAYERS: "dvc exp run -S 'n_layers=[1,2,3,4]'",
    ABLATIONS: "dvc exp run -S 'diff_vocab=[false,true]' -S 'eqn_sign=[false,true]'",
    MLP: "dvc exp run -S 'family=[A,B,C,D,X]'",
}


# --------------------------------------------------------------------------------------------
# Which figures the table has data for, and drawing them.


def draw_figures(runs: pd.DataFrame, *, fig1_width: int, n_boot: int,
                 boot_seed: int) -> dict[str, Figure]:
    """Every figure whose data is in the table, by stem; a figure without data is left out."""
    main = main_runs(runs)
    out: dict[str, Figure] = {}
    if not main.empty:
        out[FIG1] = fixed_width(main, fig1_width)
        out[FIG2] = phase_diagram(main, n_boot=n_boot, boot_seed=boot_seed)
    checks: tuple[tuple[str, Callable[[pd.DataFrame], bool], Callable[[pd.DataFrame], Figure]],
                  ...] = (
        (LAYERS, appendix.has_layers_data, appendix.layers_figure),
        (ABLATIONS, appendix.has_ablations_data, appendix.ablations_figure),
        (MLP, appendix.has_mlp_data, appendix.mlp_figure),
    )
    for stem, has_data, draw in checks:
        if has_data(runs):
            out[stem] = draw(runs)
    return out


# --------------------------------------------------------------------------------------------
# Optional wall-time record (not in the runs table).


def load_timing(path: str | Path) -> dict[str, object] | None:
    """``metrics/timing.json`` if it exists, else None.

    Expected shape (written by the metrics stage from what each train@ instance recorded)::

        {"total_wall_s": 612.4,
         "groups": [{"group": "w32-s0", "wall_s": 140.2, "n_models": 6, "steps": 2000,
                     "device": "cpu"}, ...]}

    Only ``total_wall_s`` is required; ``groups`` (a list, so ``dvc exp show`` skips it) adds
    the per-group lines.
    """
    path = Path(path)
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("total_wall_s"), int | float):
        raise ValueError(f"{path}: expected a JSON object with a number 'total_wall_s'")
    return data


# --------------------------------------------------------------------------------------------
# Small formatting helpers.


def _fmt_list(values: pd.Series) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else
                     _n(int(v)) if isinstance(v, int | np.integer) else str(v)
                     for v in sorted(values.unique()))


def _f(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _n(n: int) -> str:
    """20 000, not 20,000 (SI thousands separator, as the paper writes it)."""
    return f"{n:,}".replace(",", " ")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _signed(x: float) -> str:
    return f"{'−' if x < 0 else '+'} {abs(x):.3f} ·"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _phase_counts(df: pd.DataFrame) -> str:
    counts = df["phase"].value_counts()
    return ", ".join(f"{ph} {counts[ph]}" for ph in PHASES if ph in counts)


def _end(runs: pd.DataFrame, alpha: float) -> str:
    at = runs[runs["attn_rate"] == alpha]
    return (f"α = {alpha:g}: median GS {at[GS].median():.3f}, median DI {at[DI].median():.3f} "
            f"({_count(len(at), 'run')})")


def _figure(figures: Mapping[str, str], stem: str, alt: str) -> str:
    return f"![{alt}]({figures[stem]})"


def _not_drawn(stem: str, what: str) -> str:
    return (f"*Not drawn: the runs table has no {what}.* Produce them with "
            f"`{PRODUCE[stem]}` (or add the values to `params.yaml`) and `dvc repro`.")


def _majority(df: pd.DataFrame, phase: str) -> pd.Series:
    """Attention rates at which ``phase`` holds more than half the runs."""
    share = df.assign(hit=df["phase"] == phase).groupby("attn_rate")["hit"].mean()
    return share[share > 0.5]


# --------------------------------------------------------------------------------------------
# The sections.


def _what_was_run(runs: pd.DataFrame, main: pd.DataFrame) -> str:
    t = transformers(runs)
    parts = [f"{len(main)} one-layer transformers without ablations (figures 1–2)"]
    deeper = unablated(runs)
    deeper = deeper[deeper["n_layers"] != 1]
    if len(deeper):
        parts.append(f"{len(deeper)} transformers with {_fmt_list(deeper['n_layers'])} layers")
    ablated = t[t["diff_vocab"] | t["eqn_sign"]]
    if len(ablated):
        parts.append(f"{len(ablated)} transformers with an ablation")
    mlp = mlp_runs(runs)
    if len(mlp):
        parts.append(f"{len(mlp)} attention-free models")
    lines = [
        "## What was run",
        "",
        f"- {len(runs)} runs: " + "; ".join(parts) + ".",
        f"- Addition mod p = {_fmt_list(runs['p'])}, 80/20 split with split seed "
        f"{_fmt_list(runs['split_seed'])}; {_fmt_list(runs['steps'])} full-batch AdamW steps "
        f"per model (paper: {_n(PAPER_STEPS)}); precision "
        f"{_fmt_list(runs['precision'])}; activation {_fmt_list(runs['act'])}.",
    ]
    if len(main):
        lines.append(f"- Main grid: attention rates {_fmt_list(main['attn_rate'])}; widths "
                     f"{_fmt_list(main['width'])}; seeds {_fmt_list(main['seed'])}.")
    lines.append(f"- Test accuracy: mean {runs['test_acc'].mean():.4f}, minimum "
                 f"{runs['test_acc'].min():.4f}. Phases (rule in the project README): "
                 + ", ".join(f"{ph} {(runs['phase'] == ph).mean():.0%}" for ph in PHASES) + ".")
    return "\n".join(lines)


def _headline(main: pd.DataFrame) -> str:
    if main.empty:
        return ("## Headline\n\nThe table holds no one-layer transformer without ablations, so "
                "the paper's main comparison cannot be made here. " + _not_drawn(FIG1, "such "
                                                                                "runs"))
    lo, hi = main["attn_rate"].min(), main["attn_rate"].max()
    return f"""## Headline

- Lowest attention rate, {_end(main, lo)}.
- Highest attention rate, {_end(main, hi)}.
- Paper (width {PAPER_WIDTH}, {_n(PAPER_STEPS)} steps): pizzas have GS {PAPER_PIZZA[GS]} and DI
  {PAPER_PIZZA[DI]}; clocks GS {PAPER_CLOCK[GS]} and DI {PAPER_CLOCK[DI]}; the transition lies near
  α ≈ {PAPER_ALPHA_STAR} and moves to lower α for narrower models."""


def _figure1_section(main: pd.DataFrame, figures: Mapping[str, str], fig1_width: int) -> str:
    if FIG1 not in figures:
        return "## Figure 1: fixed width\n\n" + _not_drawn(FIG1, "one-layer transformer runs")
    w = nearest_width(main, fig1_width)
    at = main[main["width"] == w]
    pizza, clock = _majority(at, "pizza"), _majority(at, "clock")
    where = (f" (the grid width nearest to render.fig1_width = {fig1_width})"
             if w != fig1_width else "")
    trend = []
    if len(pizza):
        trend.append(f"pizzas are the majority at α = {_fmt_list(pizza.index.to_series())}")
    if len(clock):
        trend.append(f"clocks at α = {_fmt_list(clock.index.to_series())}")
    trend_txt = ("; ".join(trend) + ".") if trend else "no phase holds a majority at any α."
    nc = int((at["phase"] == "non-circular").sum())
    grid_txt = (f"{_count(at['seed'].nunique(), 'seed')} × "
                f"{_count(at['attn_rate'].nunique(), 'attention rate')}")
    return f"""## Figure 1: fixed width ({w})

{_figure(figures, FIG1, "figure 1")}

Each point is one of the {_count(len(at), "run")} at width {w}{where}:
{grid_txt}. Left: distance irrelevance against attention rate,
coloured by gradient symmetricity; right: the reverse. Pizzas sit at high GS and low DI, clocks at
lower GS and higher DI; an x marks a non-circular run ({nc} here). At this width {trend_txt}"""


def _figure2_section(main: pd.DataFrame, figures: Mapping[str, str], b: Boundary | None) -> str:
    if FIG2 not in figures:
        return ("## Figure 2: phase diagram over attention rate and width\n\n"
                + _not_drawn(FIG2, "one-layer transformer runs"))
    means = grid_means(main)
    marked = int((means["non_circular"] > NON_CIRCULAR_MARK).sum())
    marked_txt = (f"{marked} grid point{'s' if marked != 1 else ''} where most runs are "
                  f"non-circular {'carry' if marked != 1 else 'carries'} an x")
    line = ("The red line is the fitted boundary below, the shaded band its 95 % bootstrap "
            "interval." if b is not None else "No boundary could be fitted (below).")
    return f"""## Figure 2: phase diagram over attention rate and width

{_figure(figures, FIG2, "figure 2")}

Each square is one of the {len(means)} (α, width) grid points, coloured by the mean over its
seeds of gradient symmetricity (left) and distance irrelevance (right); {marked_txt}.
{line} The paper's boundary runs from α ≈ {PAPER_ALPHA_STAR} at width {PAPER_WIDTH} to higher α
for wider models."""


def _boundary_section(main: pd.DataFrame, b: Boundary | None, fig1_width: int) -> str:
    head = "### The fitted phase boundary\n\n"
    if main.empty:
        return ""
    if b is None:
        return head + (f"No boundary fitted: {why_no_boundary(main)}. The `boundary` block of "
                       "`metrics/summary.json` is null.")
    n_nc = int((main["phase"] == "non-circular").sum())
    widths = sorted({*main["width"].unique().tolist(), fig1_width})
    lo, hi = b.band(np.array(widths, dtype=float))
    fitted = main.loc[main["phase"] != "non-circular", "width"]
    rows = ["| width | α* | 95 % band |", "|---:|---:|---|"]
    for w, lo_w, hi_w in zip(widths, lo, hi, strict=True):
        note = "" if fitted.min() <= w <= fitted.max() else " (extrapolated)"
        a = b.transition_attn_rate(w)
        beyond = (" (above 1: pizza at every α)" if a > 1 else
                  " (below 0: clock at every α)" if a < 0 else "")
        rows.append(f"| {w}{note} | {_f(a)}{beyond} | {_f(lo_w)}–{_f(hi_w)} |")
    if b.fits_width:
        shift = -b.coef_log2_width / b.coef_attn_rate
        slope = (f"Per doubling of the width the transition moves by {shift:+.3f} in α "
                 f"(paper: positive, wider models stay pizza to a higher α).")
    else:
        slope = ("The runs span one width, so the width slope is not fitted: the line is "
                 "vertical by assumption, not by finding.")
    boot = (f"{b.n_boot - b.n_boot_skipped} of {b.n_boot} bootstrap resamples had both phases "
            "and were refitted." if b.n_boot else "No bootstrap (boundary.n_boot = 0): no band.")
    formula = (f"`P(pizza) = σ({'−' if b.intercept < 0 else ''}{abs(b.intercept):.3f} "
               f"{_signed(b.coef_attn_rate)} α "
               f"{_signed(b.coef_log2_width)} log₂ width)`")
    return head + f"""A logistic regression of the phase on the {b.n_runs} circular runs ({n_nc}
non-circular runs are left out, as in the paper):

{formula}

Its 50 % line is the transition attention rate α*(width) = −(b₀ + b_w · log₂ width) / b_α:

{chr(10).join(rows)}

{slope} {boot} `metrics/summary.json` carries the coefficients and α* at width {fig1_width} with
its band (block `boundary`), so `dvc exp show` compares boundaries across experiments."""


def _summary_table(groups: list[tuple[str, pd.DataFrame]]) -> str:
    rows = ["| runs of | n | α | GS median (lowest α) | DI median (lowest α) | "
            "GS median (highest α) | DI median (highest α) | phases |",
            "|---|---:|---|---:|---:|---:|---:|---|"]
    for name, df in groups:
        lo, hi = df["attn_rate"].min(), df["attn_rate"].max()
        a, z = df[df["attn_rate"] == lo], df[df["attn_rate"] == hi]
        rows.append(f"| {name} | {len(df)} | {lo:g}–{hi:g} | {a[GS].median():.3f} | "
                    f"{a[DI].median():.3f} | {z[GS].median():.3f} | {z[DI].median():.3f} | "
                    f"{_phase_counts(df)} |")
    return "\n".join(rows)


def _layers_section(runs: pd.DataFrame, figures: Mapping[str, str]) -> str:
    head = "## Appendix: deeper transformers\n\n"
    if LAYERS not in figures:
        return head + _not_drawn(LAYERS, "transformer runs with 2–4 layers")
    groups = [(name, df) for name, df in appendix.layer_panels(runs)]
    return head + f"""{_figure(figures, LAYERS, "GS and DI per number of layers")}

One column per number of layers (transformers without ablations); upper row GS, lower row DI.
The paper finds the same two families at 2–4 layers, plus mixtures and some non-circular
solutions.

{_summary_table(groups)}"""


def _ablations_section(runs: pd.DataFrame, figures: Mapping[str, str]) -> str:
    head = "## Appendix: ablations\n\n"
    if ABLATIONS not in figures:
        return head + _not_drawn(ABLATIONS, "runs with `diff_vocab` or `eqn_sign` switched on")
    groups = [panel for _, _, panel in appendix.ablation_panels(runs)]
    return head + f"""{_figure(figures, ABLATIONS, "GS and DI with and without ablations")}

`diff_vocab`: token b is written as b + p (vocabulary 2p); `eqn_sign`: a third token `=` is
appended. One column per setting and one pair of rows per depth; runs without ablation at the same
depth are the reference.

{_summary_table(groups)}"""


def _mlp_section(runs: pd.DataFrame, figures: Mapping[str, str]) -> str:
    head = "## Appendix: attention-free models\n\n"
    if MLP not in figures:
        return head + _not_drawn(MLP, "runs of the attention-free family (models A..X)")
    m = appendix.mlp_categories(runs)
    rows = ["| model | width | runs | GS mean | DI mean | phases |",
            "|---|---:|---:|---:|---:|---|"]
    for fam in mlp_order(m["family"]):
        for w, g in m[m["family"] == fam].groupby("width", sort=True):
            rows.append(f"| {fam} | {w} | {len(g)} | {g[GS].mean():.3f} | {g[DI].mean():.3f} | "
                        f"{_phase_counts(g)} |")
    return head + f"""{_figure(figures, MLP, "GS and DI of the attention-free models")}

Bars are the mean over runs, points single runs coloured by phase. A sums the two embeddings, B
adds a second layer, C embeds each operand through the first layer separately, D concatenates the
embeddings, X uses separate embeddings for the two operands (SPEC).

{chr(10).join(rows)}"""


def _differences_section(runs: pd.DataFrame, main: pd.DataFrame, b: Boundary | None,
                         fig1_width: int) -> str:
    out = ["## Where we differ from the paper, and why we think so", ""]
    steps = int(runs["steps"].max())
    if steps < PAPER_STEPS:
        out.append(f"- **Training length.** {_n(steps)} steps per model against the paper's "
                   f"{_n(PAPER_STEPS)}. With weight decay 2.0 the models "
                   "reach full test accuracy within a few thousand steps; the rest of a paper run "
                   "cleans the circuit up. We expect shorter runs to leave pizzas less "
                   "symmetric, clocks with a less distance-independent logit, and a wider "
                   "transition band.")
    if not main.empty:
        lo, hi = main["attn_rate"].min(), main["attn_rate"].max()
        a, z = main[main["attn_rate"] == lo], main[main["attn_rate"] == hi]
        out.append(f"- **The two ends.** At α = {lo:g} our median GS is {a[GS].median():.3f} and "
                   f"DI {a[DI].median():.3f} (paper's pizzas: GS {PAPER_PIZZA[GS]}, DI "
                   f"{PAPER_PIZZA[DI]}); at α = {hi:g} GS {z[GS].median():.3f} and DI "
                   f"{z[DI].median():.3f} (paper's clocks: GS {PAPER_CLOCK[GS]}, DI "
                   f"{PAPER_CLOCK[DI]}).")
        widths = sorted(main["width"].unique())
        if PAPER_WIDTH not in widths:
            w1 = nearest_width(main, fig1_width)
            out.append(f"- **Widths.** The grid has width{'s' if len(widths) > 1 else ''} "
                       f"{', '.join(map(str, widths))}, so "
                       f"figure 1 is drawn at {w1}, not the paper's {PAPER_WIDTH}. The paper "
                       "finds that narrow models leave the pizza phase at lower α, so we expect "
                       "the transition at our widths to sit below its α ≈ "
                       f"{PAPER_ALPHA_STAR}.")
        out.append(_boundary_difference(main, b, fig1_width))
        n_seeds = main.groupby(["width", "attn_rate"]).size()
        out.append(f"- **Sample size.** {len(main)} one-layer runs on a fixed grid "
                   f"({per_point(n_seeds).replace('mean over ', '')}) against the paper's "
                   f"{PAPER_RUNS} random runs: the band of the boundary is wider than a "
                   "paper-scale sweep would give, and on a grid the line is placed no finer "
                   "than midway between neighbouring attention rates.")
        nc = float((main["phase"] == "non-circular").mean())
        if nc > 0:
            out.append(f"- **Non-circular runs.** {nc:.0%} of the one-layer runs are "
                       "non-circular (not learned, or embeddings not made of circles); like the "
                       "paper we leave them out of the boundary fit.")
    return "\n".join(out)


def _boundary_difference(main: pd.DataFrame, b: Boundary | None, fig1_width: int) -> str:
    if b is None:
        return ("- **Boundary.** None could be fitted (" + why_no_boundary(main) + "), so the "
                f"paper's transition near α ≈ {PAPER_ALPHA_STAR} cannot be compared.")
    a = b.transition_attn_rate(PAPER_WIDTH)
    lo, hi = (float(x[0]) for x in b.band(np.array([float(PAPER_WIDTH)])))
    band = f" (95 % band {_f(lo)}–{_f(hi)})" if math.isfinite(lo) else ""
    fitted = main.loc[main["phase"] != "non-circular", "width"]
    extrap = ("" if fitted.min() <= PAPER_WIDTH <= fitted.max()
              else f", extrapolated from widths {fitted.min()}–{fitted.max()}")
    if math.isfinite(lo) and lo <= PAPER_ALPHA_STAR <= hi:
        verdict = "consistent with the paper's"
    elif a < PAPER_ALPHA_STAR:
        verdict = "below the paper's"
    else:
        verdict = "above the paper's"
    text = (f"- **Boundary.** At width {PAPER_WIDTH} our fitted transition is α* = {_f(a)}"
            f"{band}{extrap}: {verdict} α ≈ {PAPER_ALPHA_STAR}.")
    if b.fits_width:
        shift = -b.coef_log2_width / b.coef_attn_rate
        text += (f" Per doubling of width it moves by {shift:+.3f}"
                 + (" (same direction as the paper's)." if shift > 0 else
                    "; the paper has it rising with width. With few widths and seeds we do not "
                    "read much into the slope."))
    return text


def _compute_section(runs: pd.DataFrame, timing: Mapping[str, object] | None) -> str:
    devices = runs["device"].value_counts().sort_index()
    hw = "; ".join(f"{n} runs on `{d}`" for d, n in devices.items())
    lines = ["## Hardware and wall time", "",
             f"- Hardware (the `device` column): {hw}; precision {_fmt_list(runs['precision'])}."]
    if timing is None:
        lines.append("- Wall time is not in the runs table and `metrics/timing.json` is absent; "
                     "the progress bar of each `train@<width>-<seed>` stage in the `dvc repro` "
                     "log shows its elapsed time.")
    else:
        total = float(timing["total_wall_s"])  # type: ignore[arg-type]
        lines.append(f"- Training wall time (`metrics/timing.json`): {_duration(total)} in "
                     "total.")
        groups = timing.get("groups")
        if isinstance(groups, list) and groups:
            for g in sorted(groups, key=lambda g: str(g.get("group", ""))):
                extra = ", ".join(f"{k} {g[k]}" for k in ("n_models", "steps", "device")
                                  if k in g)
                lines.append(f"  - `{g.get('group', '?')}`: "
                             f"{_duration(float(g.get('wall_s', math.nan)))}"
                             + (f" ({extra})" if extra else ""))
    return "\n".join(lines)


def _grid_table(main: pd.DataFrame) -> str:
    if main.empty:
        return ""
    rows = ["## Every grid point of figure 2", "",
            "| width | α | runs | GS mean | DI mean | circularity | test acc | phases |",
            "|---:|---:|---:|---:|---:|---:|---:|---|"]
    for (w, a), g in main.groupby(["width", "attn_rate"], sort=True):
        rows.append(f"| {w} | {a:.3g} | {len(g)} | {g[GS].mean():.3f} | {g[DI].mean():.3f} | "
                    f"{g['circularity'].mean():.3f} | {g['test_acc'].mean():.3f} | "
                    f"{_phase_counts(g)} |")
    return "\n".join(rows)


HOW = """## How it was made

`dvc repro` with the committed `params.yaml`; stages `dataset → train@<width>-<seed> → metrics →
render`. Load the data with `pandas.read_parquet("metrics/runs.parquet")`; the fitted boundary is
`clockpizza.results.boundary.fit_main(runs)`."""


def build_report(runs: pd.DataFrame, figures: Mapping[str, str], fig1_width: int, *,
                 n_boot: int = 200, boot_seed: int = 0,
                 timing: Mapping[str, object] | None = None, examples: str = "") -> str:
    """The markdown report.

    ``figures`` maps the stems in :data:`FIGURES` that were drawn to paths relative to the
    report; a stem that is absent is reported as not drawn, with the command that produces its
    data. The boundary is refitted here exactly as figure 2 and summary.json fit it (same
    ``n_boot`` and ``boot_seed``). ``timing`` is the optional :func:`load_timing` record;
    ``examples`` the Model A / Model B section (:func:`examples_section`), placed after the
    boundary.
    """
    main = main_runs(runs)
    b = fit_boundary(main, n_boot=n_boot, seed=boot_seed) if not main.empty else None
    sections = [
        "# Results: the Clock and the Pizza, reproduced\n\n"
        "Generated by the `render` stage of `dvc repro` from `metrics/runs.parquet`; do not edit "
        "by hand. Every number below is computed from that table, except the paper's, which are "
        "quoted.",
        _what_was_run(runs, main),
        _headline(main),
        _figure1_section(main, figures, fig1_width),
        _figure2_section(main, figures, b),
        _boundary_section(main, b, fig1_width),
        examples.strip(),
        _layers_section(runs, figures),
        _ablations_section(runs, figures),
        _mlp_section(runs, figures),
        _differences_section(runs, main, b, fig1_width),
        _compute_section(runs, timing),
        _grid_table(main),
        HOW,
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


_EXPLAIN = {
    "clock": (
        "The paper's Model A (α = 1) is a clock: its embedding is a few clean circles, each "
        "explained by Q_clock, and its correct logit depends on a + b alone, so the reordered "
        "table shows no bands along a − b (DI near 1). With full attention the weight each head "
        "puts on a changes with the inputs."
    ),
    "pizza": (
        "The paper's Model B (α = 0) is a pizza: clean circles explained by Q_pizza, each with "
        "an accompanying circle at twice its frequency (Q_acc), and a correct logit that "
        "depends on a − b through |cos(w(a − b)/2)|: with rows ordered by k(a − b) mod p it is "
        "one bright band across the middle (low DI). At α = 0 attention is constant: every "
        "weight is 1."
    ),
}


def examples_section(runs: pd.DataFrame, circles: pd.DataFrame, chosen: dict[str, str],
                     figures: dict[str, str]) -> str:
    """Markdown for the Model A / Model B figures: what each shows, and its circles.

    ``chosen`` maps role ("clock", "pizza") to run_id, ``figures`` role to an image path.
    """
    parts = ["""
## Figure 3: Model A (clock) and Model B (pizza)

Each figure is one trained run. Top: every circle of its embedding (two principal components of
the token embeddings `W_E[:p]`, each token at its coordinates and joined in order around the
circle), titled with its frequency k, share of the embedding variance, type and the fraction of
variance of the full logit tensor explained by each template with only that circle kept
(README, "Circles"). Bottom left: the correct logit over (a + b, a − b), the rows of a − b
ordered by k(a − b) mod p, k being the frequency of the largest circle of the example's own type
(else of the largest circle). Bottom right: for each attention head, the weight the last
position puts on the token a, with a and b ordered around that same circle. Circles are numbered
from 1 here; `metrics/circles.parquet` counts circles and components from 0.
"""]
    by_id = runs.set_index("run_id")
    for role, name in (("clock", "Model A"), ("pizza", "Model B")):
        run_id = chosen[role]
        r = by_id.loc[run_id]
        parts.append(f"""
### {name}: run `{run_id}` (α = {r["attn_rate"]:g}, width {r["width"]}, seed {r["seed"]})

![{name}]({figures[role]})

{_EXPLAIN[role]} This run: GS {r[GS]:.3f}, DI {r[DI]:.3f}, {r["n_circles"]} circles, the largest
of type {r["dominant_circle_type"]}; phase **{r["phase"]}**.

{circles_markdown(circles, run_id)}
""")
    return "".join(parts)
