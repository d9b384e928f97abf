"""report/README.md as a pure function of the tables (numbers are never typed by hand).

The report reads like the results section of the paper: what was run, each figure with what it
shows and the numbers behind it, the fitted phase boundary, the authors' own models and runs
beside ours, the appendix figures, where our result differs from the paper's and why we think
so, and the hardware. Its text is the Jinja2 template ``templates/report.md.j2`` (figure 3's
part ``examples.md.j2``): every sentence is written there, and each ``_*_context`` function here
computes one section's numbers, flags and short labels (a formatted list of values, a phase
count), which :func:`build_report` renders. The paper's own quoted claims (its §3 and figures
1-2) are the constants ``PAPER_*`` below; every other number is computed from the tables. No
dates, no timings taken here: identical inputs give identical bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from clockpizza.figures import plots_appendix as appendix
from clockpizza.figures.example_plots import circles_markdown
from clockpizza.figures.plots import (
    DI,
    GS,
    NON_CIRCULAR_MARK,
    FigureRecipe,
    fixed_width,
    grid_means,
    nearest_width,
    phase_diagram,
)
from clockpizza.figures.plots_dynamics import dynamics_figure, has_dynamics_data
from clockpizza.results.boundary import Boundary, why_no_boundary
from clockpizza.results.paper_compare import (
    PAPER_EXAMPLES,
    TOL_DI,
    TOL_GS,
    PublishedPhases,
    compared_width,
    tenth_table,
)
from clockpizza.results.selection import (
    PHASES,
    main_runs,
    mlp_order,
    mlp_runs,
    transformers,
    unablated,
)

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
DYNAMICS = "fig4_dynamics"
FIGURES = (FIG1, FIG2, LAYERS, ABLATIONS, MLP)
# Figure 3: (who, role) -> stem. Model A is the pizza, Model B the clock (the authors' naming).
FIG3 = {("paper", "pizza"): "fig3_paper_model_a_pizza", ("ours", "pizza"): "fig3_model_a_pizza",
        ("paper", "clock"): "fig3_paper_model_b_clock", ("ours", "clock"): "fig3_model_b_clock"}
_NAMES = {"pizza": "Model A", "clock": "Model B"}
ALL_FIGURES = (*FIGURES, *FIG3.values(), DYNAMICS)
# The command that puts each figure's data into the table, named when a figure is not drawn
# (keys of params.yaml; tests/test_report.py runs each through the params check).
PRODUCE = {
    FIG1: "dvc exp run -S 'model.n_layers=1' -S 'data.diff_vocab=false' "
          "-S 'data.eqn_sign=false'",
    FIG2: "dvc exp run -S 'model.n_layers=1' -S 'data.diff_vocab=false' "
          "-S 'data.eqn_sign=false'",
    LAYERS: "dvc exp run -S 'model.n_layers=[1,2,3,4]'",
    ABLATIONS: "dvc exp run -S 'data.diff_vocab=[false,true]' -S 'data.eqn_sign=[false,true]'",
    MLP: "dvc exp run -S 'mlp_family.models=[A,B,C,D,X]'",
}


# --------------------------------------------------------------------------------------------
# Which figures the table has data for, and drawing them.


def figure_recipes(runs: pd.DataFrame, *, fig1_width: int, boundary: Boundary | None,
                   published: pd.DataFrame | None = None,
                   dynamics: pd.DataFrame | None = None) -> dict[str, FigureRecipe]:
    """Every figure whose data is in the table, by stem, not yet drawn (call a recipe to draw
    it); a figure without data is left out.

    ``boundary``: :func:`clockpizza.results.boundary.fit_main` of ``runs`` (the summarise
    stage's metrics/boundary.json); ``published``: the paper's runs, drawn behind ours in
    figure 1; ``dynamics``: the
    snapshots' metrics (metrics/dynamics.parquet), for the training-dynamics figure."""
    main = main_runs(runs)
    out: dict[str, FigureRecipe] = {}
    if not main.empty:
        out[FIG1] = partial(fixed_width, main, fig1_width, published)
        out[FIG2] = partial(phase_diagram, main, boundary)
    checks: tuple[tuple[str, Callable[[pd.DataFrame], bool], Callable[[pd.DataFrame], Figure]],
                  ...] = (
        (LAYERS, appendix.has_layers_data, appendix.layers_figure),
        (ABLATIONS, appendix.has_ablations_data, appendix.ablations_figure),
        (MLP, appendix.has_mlp_data, appendix.mlp_figure),
    )
    for stem, has_data, draw in checks:
        if has_data(runs):
            out[stem] = partial(draw, runs)
    if dynamics is not None and has_dynamics_data(dynamics, runs):
        out[DYNAMICS] = partial(dynamics_figure, dynamics, runs)
    return out


# --------------------------------------------------------------------------------------------
# Optional wall-time record (not in the runs table).


def load_timing(path: str | Path) -> dict[str, object] | None:
    """``metrics/timing.json`` if it exists, else None.

    Expected shape (written by the metrics stage from what the train stage recorded per run)::

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
# Small formatting helpers (also the template's filters).


def _fmt_list(values: pd.Series) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else
                     _n(int(v)) if isinstance(v, int | np.integer) else str(v)
                     for v in sorted(values.unique()))


def _f(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _n(n: int) -> str:
    """20 000, not 20,000 (SI thousands separator, as the paper writes it)."""
    return f"{n:,}".replace(",", " ")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _g(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:g}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.0%}".replace("%", " %")


def _share(x: float) -> str:
    """37% without a space, as "What was run" and "Where we differ" write a share of runs."""
    return f"{x:.0%}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _phase_counts(df: pd.DataFrame) -> str:
    counts = df["phase"].value_counts()
    return ", ".join(f"{ph} {counts[ph]}" for ph in PHASES if ph in counts)


def _end(runs: pd.DataFrame, alpha: float) -> dict[str, Any]:
    """Median GS and DI of the runs at attention rate ``alpha`` (one end of the grid)."""
    at = runs[runs["attn_rate"] == alpha]
    return {"alpha": alpha, "gs": float(at[GS].median()), "di": float(at[DI].median()),
            "n": len(at)}


def _majority(df: pd.DataFrame, phase: str) -> pd.Series:
    """Attention rates at which ``phase`` holds more than half the runs."""
    share = df.assign(hit=df["phase"] == phase).groupby("attn_rate")["hit"].mean()
    return share[share > 0.5]


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
            for row in df.to_dict("records")]


# --------------------------------------------------------------------------------------------
# The sections' numbers.


def _run_context(runs: pd.DataFrame, main: pd.DataFrame) -> dict[str, Any]:
    t = transformers(runs)
    deeper = unablated(runs)
    deeper = deeper[deeper["n_layers"] != 1]
    triples = runs["gs_triples"] if "gs_triples" in runs.columns else pd.Series([100])

    def flag(column: str) -> bool:
        return bool(runs[column].any()) if column in runs.columns else False

    return {
        "n": len(runs), "n_main": len(main),
        "deeper": ({"n": len(deeper), "layers": _fmt_list(deeper["n_layers"])} if len(deeper)
                   else None),
        "n_ablated": len(t[t["diff_vocab"] | t["eqn_sign"]]), "n_mlp": len(mlp_runs(runs)),
        "p": _fmt_list(runs["p"]),
        "split_seed": _fmt_list(runs["split_seed"]), "steps": _fmt_list(runs["steps"]),
        "precision": _fmt_list(runs["precision"]), "act": _fmt_list(runs["act"]),
        "split_per_run": flag("split_per_run"), "init_per_run": flag("init_per_run"),
        "gs_triples": [int(n) for n in sorted(triples.unique())],
        "grid": None if main.empty else {"alphas": _fmt_list(main["attn_rate"]),
                                         "widths": _fmt_list(main["width"]),
                                         "seeds": _fmt_list(main["seed"])},
        "acc_mean": float(runs["test_acc"].mean()), "acc_min": float(runs["test_acc"].min()),
        "phase_shares": ", ".join(f"{ph} {_share((runs['phase'] == ph).mean())}"
                                  for ph in PHASES),
        "diverged": _diverged_runs(runs),
    }


def _diverged_runs(runs: pd.DataFrame) -> list[dict[str, object]]:
    """The runs whose training diverged (column ``diverged``), for the report to list."""
    if "diverged" not in runs.columns:
        return []
    bad = runs[runs["diverged"]]
    return [{"run_id": r.run_id, "family": r.family, "width": int(r.width), "seed": int(r.seed),
             "alpha": None if pd.isna(r.attn_rate) else float(r.attn_rate),
             "step": int(r.diverged_step) if "diverged_step" in runs.columns else -1}
            for r in bad.itertuples()]


def _headline_context(main: pd.DataFrame) -> dict[str, Any] | None:
    if main.empty:
        return None
    return {"low": _end(main, main["attn_rate"].min()),
            "high": _end(main, main["attn_rate"].max())}


def _fig1_context(main: pd.DataFrame, figures: Mapping[str, str], fig1_width: int,
                  n_published: int) -> dict[str, Any] | None:
    if FIG1 not in figures:
        return None
    w = nearest_width(main, fig1_width)
    at = main[main["width"] == w]
    pizza, clock = _majority(at, "pizza"), _majority(at, "clock")
    return {
        "width": w, "path": figures[FIG1], "n": len(at), "asked_width": fig1_width,
        "n_seeds": int(at["seed"].nunique()), "n_alphas": int(at["attn_rate"].nunique()),
        "nc": int((at["phase"] == "non-circular").sum()),
        "pizza_alphas": _fmt_list(pizza.index.to_series()) if len(pizza) else None,
        "clock_alphas": _fmt_list(clock.index.to_series()) if len(clock) else None,
        "published": n_published,
    }


def _tenths_context(runs: pd.DataFrame, published: pd.DataFrame | None) -> dict[str, Any] | None:
    w = compared_width(runs)
    if published is None or w is None:
        return None
    table = tenth_table(runs, published, w)
    both = table[(table["our_runs"] > 0) & (table["paper_runs"] > 0)]
    return {"width": w, "exact": w == 128, "tol_gs": TOL_GS, "tol_di": TOL_DI,
            "n_within": int(both["within"].sum()), "n_compared": len(both),
            "rows": _records(table)}


def _fig2_context(main: pd.DataFrame, figures: Mapping[str, str],
                  b: Boundary | None) -> dict[str, Any] | None:
    if FIG2 not in figures:
        return None
    means = grid_means(main)
    return {"path": figures[FIG2], "points": len(means),
            "marked": int((means["non_circular"] > NON_CIRCULAR_MARK).sum()),
            "fitted": b is not None}


def _boundary_context(main: pd.DataFrame, b: Boundary | None,
                      fig1_width: int) -> dict[str, Any] | None:
    if main.empty:
        return None
    if b is None:
        return {"none": why_no_boundary(main)}
    widths = sorted({*main["width"].unique().tolist(), fig1_width})
    lo, hi = b.band(np.array(widths, dtype=float))
    fitted = main.loc[main["phase"] != "non-circular", "width"]
    rows = [{"width": w, "alpha": b.transition_attn_rate(w), "lo": float(lo_w),
             "hi": float(hi_w), "extrapolated": not fitted.min() <= w <= fitted.max()}
            for w, lo_w, hi_w in zip(widths, lo, hi, strict=True)]
    return {"none": None, "n_runs": b.n_runs,
            "n_nc": int((main["phase"] == "non-circular").sum()),
            "intercept": b.intercept, "coef_alpha": b.coef_attn_rate,
            "coef_width": b.coef_log2_width, "fits_width": b.fits_width,
            "shift": _shift(b), "n_boot": b.n_boot,
            "n_refitted": b.n_boot - b.n_boot_skipped, "rows": rows, "width": fig1_width}


def _shift(b: Boundary) -> float | None:
    """How far α* moves per doubling of the width; None when the width slope is not fitted."""
    return -b.coef_log2_width / b.coef_attn_rate if b.fits_width else None


def _summary_rows(groups: list[tuple[str, pd.DataFrame]]) -> list[dict[str, Any]]:
    rows = []
    for name, df in groups:
        lo, hi = df["attn_rate"].min(), df["attn_rate"].max()
        a, z = df[df["attn_rate"] == lo], df[df["attn_rate"] == hi]
        rows.append({"name": name, "n": len(df), "lo": lo, "hi": hi,
                     "gs_lo": a[GS].median(), "di_lo": a[DI].median(),
                     "gs_hi": z[GS].median(), "di_hi": z[DI].median(),
                     "phases": _phase_counts(df)})
    return rows


def _layers_context(runs: pd.DataFrame, figures: Mapping[str, str]) -> dict[str, Any] | None:
    if LAYERS not in figures:
        return None
    return {"path": figures[LAYERS], "groups": _summary_rows(list(appendix.layer_panels(runs)))}


def _ablations_context(runs: pd.DataFrame,
                       figures: Mapping[str, str]) -> dict[str, Any] | None:
    if ABLATIONS not in figures:
        return None
    groups = [panel for _, _, panel in appendix.ablation_panels(runs)]
    return {"path": figures[ABLATIONS], "groups": _summary_rows(groups)}


def _mlp_context(runs: pd.DataFrame, figures: Mapping[str, str]) -> dict[str, Any] | None:
    if MLP not in figures:
        return None
    m = appendix.mlp_categories(runs)
    rows = [{"family": fam, "width": w, "runs": len(g), "gs": g[GS].mean(), "di": g[DI].mean(),
             "phases": _phase_counts(g)}
            for fam in mlp_order(m["family"])
            for w, g in m[m["family"] == fam].groupby("width", sort=True)]
    return {"path": figures[MLP], "rows": rows}


def _differences(runs: pd.DataFrame, main: pd.DataFrame, b: Boundary | None,
                 fig1_width: int) -> dict[str, Any]:
    """The numbers of "Where we differ from the paper"; ``main`` None without main runs."""
    steps = int(runs["steps"].max())
    if main.empty:
        return {"steps": steps, "main": None}
    n_seeds = main.groupby(["width", "attn_rate"]).size()
    widths = [int(w) for w in sorted(main["width"].unique())]
    return {"steps": steps, "main": {
        "low": _end(main, main["attn_rate"].min()), "high": _end(main, main["attn_rate"].max()),
        "widths": widths, "has_paper_width": PAPER_WIDTH in widths,
        "fig1_width": nearest_width(main, fig1_width),
        "boundary": _boundary_difference(main, b), "n": len(main),
        "seeds_lo": int(n_seeds.min()), "seeds_hi": int(n_seeds.max()),
        "nc_share": float((main["phase"] == "non-circular").mean()),
    }}


def _boundary_difference(main: pd.DataFrame, b: Boundary | None) -> dict[str, Any]:
    """Our boundary at the paper's width against its α*: ``none`` (why not fitted) or the
    numbers, with ``verdict`` one of consistent, below, above."""
    if b is None:
        return {"none": why_no_boundary(main)}
    a = b.transition_attn_rate(PAPER_WIDTH)
    lo, hi = (float(x[0]) for x in b.band(np.array([float(PAPER_WIDTH)])))
    fitted = main.loc[main["phase"] != "non-circular", "width"]
    if math.isfinite(lo) and lo <= PAPER_ALPHA_STAR <= hi:
        verdict = "consistent"
    elif a < PAPER_ALPHA_STAR:
        verdict = "below"
    else:
        verdict = "above"
    return {"none": None, "alpha": a, "lo": lo, "hi": hi, "has_band": math.isfinite(lo),
            "fitted_lo": int(fitted.min()), "fitted_hi": int(fitted.max()),
            "extrapolated": not fitted.min() <= PAPER_WIDTH <= fitted.max(),
            "verdict": verdict, "shift": _shift(b)}


def _compute_context(runs: pd.DataFrame,
                     timing: Mapping[str, object] | None) -> dict[str, Any]:
    devices = runs["device"].value_counts().sort_index()
    out: dict[str, Any] = {"devices": [{"device": d, "n": n} for d, n in devices.items()],
                           "precision": _fmt_list(runs["precision"]), "timing": None}
    if timing is None:
        return out
    groups = timing.get("groups")
    groups = groups if isinstance(groups, list) else []
    out["timing"] = {
        "total": float(timing["total_wall_s"]),  # type: ignore[arg-type]
        "groups": [{"group": g.get("group", "?"), "wall_s": float(g.get("wall_s", math.nan)),
                    "extra": ", ".join(f"{k} {g[k]}" for k in ("n_models", "steps", "device")
                                       if k in g)}
                   for g in sorted(groups, key=lambda g: str(g.get("group", "")))]}
    return out


def _grid_rows(main: pd.DataFrame) -> list[dict[str, Any]]:
    return [{"width": w, "alpha": a, "runs": len(g), "gs": g[GS].mean(), "di": g[DI].mean(),
             "circ": g["circularity"].mean(), "acc": g["test_acc"].mean(),
             "phases": _phase_counts(g)}
            for (w, a), g in main.groupby(["width", "attn_rate"], sort=True)]


def _dynamics_context(runs: pd.DataFrame, figures: Mapping[str, str],
                      dynamics: pd.DataFrame | None) -> dict[str, Any] | None:
    if DYNAMICS not in figures or dynamics is None:
        return None
    main = main_runs(runs)
    main = main[main["phase_settle_step"] >= 0]
    last = int(dynamics["step"].max())
    settle = main.assign(settle=main[["gs_settle_step", "di_settle_step"]].max(axis=1))
    rows = []
    for (w, a), g in settle.groupby(["width", "attn_rate"], sort=True):
        acc = g.loc[g["full_test_acc_step"] >= 0, "full_test_acc_step"]
        rows.append({"width": w, "alpha": a, "runs": len(g),
                     "gs": float(g["gs_settle_step"].median()),
                     "di": float(g["di_settle_step"].median()),
                     "phase": float(g["phase_settle_step"].median()),
                     "switched": int(g["phase_switched"].sum()),
                     "acc": float(acc.median()) if len(acc) else math.nan,
                     "late": int((g["settle"] >= last).sum())})
    n_late = int((settle["settle"] >= last).sum())
    half = int((settle["settle"] > last / 2).sum())
    return {"path": figures[DYNAMICS], "last": last, "rows": rows, "n_late": n_late,
            "n_second_half": half,
            "n_switched": int(settle["phase_switched"].sum()), "n": len(settle),
            **_per_run_snapshots(main, dynamics)}


PER_RUN_MAX = 48  # runs listed one by one in the report's snapshot table (a laptop-sized grid)


def _per_run_snapshots(main: pd.DataFrame, dynamics: pd.DataFrame) -> dict[str, Any]:
    """GS and DI of every main run at its last four snapshot steps, one row per run, for a
    grid small enough to list (``PER_RUN_MAX``); a mean over seeds hides that seeds differ."""
    if len(main) > PER_RUN_MAX:
        return {"per_run": [], "per_run_steps": []}
    snaps = dynamics[dynamics["run_id"].isin(main["run_id"])]
    steps = sorted(int(s) for s in snaps["step"].unique())[-4:]
    gs = snaps.pivot_table(index="run_id", columns="step", values=GS)
    di = snaps.pivot_table(index="run_id", columns="step", values=DI)
    rows = []
    for r in main.sort_values(["width", "attn_rate", "seed"]).itertuples():
        if r.run_id not in gs.index:
            continue
        rows.append({"width": r.width, "alpha": r.attn_rate, "seed": r.seed, "phase": r.phase,
                     "gs": " / ".join(_f2(gs.at[r.run_id, s]) for s in steps),
                     "di": " / ".join(_f2(di.at[r.run_id, s]) for s in steps)})
    return {"per_run": rows, "per_run_steps": " / ".join(_n(s) for s in steps)}


def _f2(x: float) -> str:
    return "n/a" if pd.isna(x) else f"{x:.2f}"


# --------------------------------------------------------------------------------------------
# The authors' models and runs, and the mid-α experiment.


@dataclass(frozen=True)
class PaperInputs:
    """What the render stage knows of the paper (each part optional: a section without its
    data is left out). ``models``: metrics/paper_models.parquet; ``published``: the paper's
    runs (:func:`~clockpizza.results.paper_compare.read_published_runs`);
    ``published_phases``: our rule on them (metrics/published_phases.json,
    :func:`~clockpizza.results.paper_compare.published_phases`); ``mid_alpha``: the table of
    :mod:`clockpizza.tools.mid_alpha` labelled by today's rule (metrics/mid_alpha.parquet).
    The summarise stage applies the rule; the report only reads."""

    models: pd.DataFrame | None = None
    published: pd.DataFrame | None = None
    published_phases: PublishedPhases | None = None
    mid_alpha: pd.DataFrame | None = None


def _paper_models_context(models: pd.DataFrame | None) -> dict[str, Any] | None:
    if models is None or models.empty:
        return None
    roles = {runid: _NAMES[role] for role, runid in PAPER_EXAMPLES.items()}
    rows = [{"paper_runid": r.paper_runid, "role": roles.get(r.paper_runid),
             "family": r.family, "diff_vocab": bool(r.diff_vocab), "eqn_sign": bool(r.eqn_sign),
             "attn_rate": r.attn_rate, "width": r.width,
             "gs": r.gradient_symmetricity_as_published,
             "gs_pub": r.gradient_symmetricity_published,
             "di": r.distance_irrelevance, "di_pub": r.distance_irrelevance_published,
             "di_correct": r.distance_irrelevance_correct, "circ": r.circularity,
             "circ_pub": r.circularity_published, "n_circles": r.n_circles,
             "phase": r.phase}
            for r in models.sort_values("paper_runid").itertuples()]
    return {"rows": rows,
            "has_model_b": bool((models["paper_runid"] == PAPER_EXAMPLES["clock"]).any()),
            "any_diff_vocab": bool(models["diff_vocab"].any())}


def _mid_alpha_context(table: pd.DataFrame | None) -> dict[str, Any] | None:
    if table is None or table.empty:
        return None
    rows = []
    for cond, g in table.groupby("condition", sort=False):
        symmetric = g[GS] >= 0.9
        rows.append({"condition": cond, "runs": len(g), "gs": g[GS].median(),
                     "di": g[DI].median(), "symmetric": int(symmetric.sum()),
                     "sym_high_di": int((symmetric & (g[DI] > 0.6)).sum()),
                     "phases": _phase_counts(g),
                     "phases_now": _phase_counts(g.assign(phase=g["phase_now"]))})
    by = {r["condition"]: r for r in rows}
    return {"widths": _fmt_list(table["width"]), "alphas": _fmt_list(table["attn_rate"]),
            "steps": _fmt_list(table["steps"]), "rows": rows, "by": by,
            "runs": sum(r["runs"] for r in rows),
            "symmetric": sum(r["symmetric"] for r in rows),
            "sym_high_di": sum(r["sym_high_di"] for r in rows)}


# --------------------------------------------------------------------------------------------
# Figure 3.




def _side(who: str, run: pd.Series, run_id: str, circles: pd.DataFrame,
          path: str) -> dict[str, Any]:
    seed = run.get("seed")
    return {"who": who, "run_id": run_id, "path": path, "alpha": float(run["attn_rate"]),
            "width": int(run["width"]),
            "seed": None if seed is None or pd.isna(seed) else int(seed),
            "gs": float(run[GS]), "di": float(run[DI]), "n_circles": int(run["n_circles"]),
            "dominant": run["dominant_circle_type"], "phase": run["phase"],
            "circles": circles_markdown(circles, run_id)}


def examples_context(runs: pd.DataFrame, circles: pd.DataFrame, chosen: dict[str, str],
                     figures: Mapping[str, str],
                     paper: tuple[pd.DataFrame, pd.DataFrame] | None = None,
                     ) -> list[dict[str, Any]]:
    """Figure 3's numbers: per role (pizza = Model A, then clock = Model B) our run and, with
    ``paper`` = (paper_models table, paper circles), the authors' beside it.

    ``chosen`` maps role to our run_id; ``figures`` maps the stems of :data:`FIG3` to paths.
    """
    by_id = runs.set_index("run_id")
    out = []
    for role in ("pizza", "clock"):
        ours = _side("Ours:", by_id.loc[chosen[role]], chosen[role], circles,
                     figures[FIG3["ours", role]])
        theirs = None
        if paper is not None and FIG3["paper", role] in figures:
            models, paper_circles = paper
            runid = PAPER_EXAMPLES[role]
            row = models.set_index("paper_runid").loc[runid]
            theirs = _side("The authors':", row, runid, paper_circles,
                           figures[FIG3["paper", role]])
        out.append({"name": _NAMES[role], "role": role,
                    "ours": ours, "paper": theirs})
    return out


def examples_section(runs: pd.DataFrame, circles: pd.DataFrame, chosen: dict[str, str],
                     figures: dict[str, str]) -> str:
    """Figure 3's section alone (our runs only), as markdown: ``figures`` maps role to path."""
    paths = {FIG3["ours", role]: path for role, path in figures.items()}
    return _render("examples.md.j2",
                   {"examples": examples_context(runs, circles, chosen, paths)})


# --------------------------------------------------------------------------------------------
# Rendering.


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("clockpizza.figures", "templates"),
    undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    keep_trailing_newline=True, autoescape=False,
)
_ENV.filters.update(f3=_f, g=_g, n=_n, count=_count, pct=_pct, share=_share,
                    duration=_duration)


def _render(template: str, context: Mapping[str, Any]) -> str:
    text = _ENV.get_template(template).render(**context)
    while "\n\n\n" in text:  # optional sections leave blank lines behind
        text = text.replace("\n\n\n", "\n\n")
    return text.strip() + "\n"


def build_report(runs: pd.DataFrame, figures: Mapping[str, str], fig1_width: int, *,
                 boundary: Boundary | None = None,
                 timing: Mapping[str, object] | None = None,
                 examples: list[dict[str, Any]] | None = None,
                 paper: PaperInputs | None = None,
                 dynamics: pd.DataFrame | None = None,
                 paper_scale: Mapping[str, Any] | None = None,
                 neurons: Mapping[str, Any] | None = None) -> str:
    """The markdown report (``templates/report.md.j2``).

    ``figures`` maps the stems in :data:`ALL_FIGURES` that were drawn to paths relative to the
    report; a stem of :data:`FIGURES` that is absent is reported as not drawn, with the command
    that produces its data. ``boundary`` is the fit the summarise stage saved (figure 2 and
    summary.json show the same one). ``timing`` is the optional :func:`load_timing`
    record; ``examples`` figure 3's :func:`examples_context`; ``paper`` what is known of the
    paper's models and runs (the phase rule already applied, by the summarise stage);
    ``dynamics`` the snapshots' metrics (the training-dynamics section);
    ``paper_scale`` the shipped paper-length runs'
    :func:`clockpizza.figures.paper_scale.paper_scale_context` (its section comes first).
    ``neurons`` the "Two stories or one?" section's
    :func:`~clockpizza.figures.report_neurons.neurons_context` (left out when None).
    """
    paper = paper or PaperInputs()
    main = main_runs(runs)
    b = boundary if not main.empty else None
    n_published = 0 if paper.published is None else len(paper.published)
    context = {
        "paper": {"steps": PAPER_STEPS, "width": PAPER_WIDTH, "alpha_star": PAPER_ALPHA_STAR,
                  "runs": PAPER_RUNS,
                  "pizza_gs": PAPER_PIZZA[GS], "pizza_di": PAPER_PIZZA[DI],
                  "clock_gs": PAPER_CLOCK[GS], "clock_di": PAPER_CLOCK[DI]},
        "ps": paper_scale,
        "run": _run_context(runs, main),
        "headline": _headline_context(main),
        "fig1": None if main.empty else _fig1_context(main, figures, fig1_width, n_published),
        "tenths": _tenths_context(runs, paper.published),
        "fig2": None if main.empty else _fig2_context(main, figures, b),
        "boundary": _boundary_context(main, b, fig1_width),
        "examples": examples or [],
        "paper_models": _paper_models_context(paper.models),
        "rule": paper.published_phases,
        "mid_alpha": _mid_alpha_context(paper.mid_alpha),
        "dynamics": _dynamics_context(runs, figures, dynamics),
        "neurons": neurons,
        "layers": _layers_context(runs, figures),
        "ablations": _ablations_context(runs, figures),
        "mlp": _mlp_context(runs, figures),
        "differences": _differences(runs, main, b, fig1_width),
        "compute": _compute_context(runs, timing),
        "grid_table": _grid_rows(main),
        "produce": {"fig1": PRODUCE[FIG1], "fig2": PRODUCE[FIG2], "layers": PRODUCE[LAYERS],
                    "ablations": PRODUCE[ABLATIONS], "mlp": PRODUCE[MLP]},
    }
    return _render("report.md.j2", context)
