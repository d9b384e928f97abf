"""The report's "Paper scale" section: the paper-length runs shipped under results/, drawn and
compared with the paper (pure functions of the summarise stage's tables; torch-free).

Its figures are the paper's figure 1 at width 128 (the published runs behind ours) and figure 2
over the shipped widths with the boundary the summarise stage fitted; its tables say what made
each results folder, GS and DI medians per width and α, and the α tenths at width 128 against
the published runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import pandas as pd

from clockpizza.figures.plots import DI, GS, FigureRecipe, fixed_width, phase_diagram
from clockpizza.results.boundary import Boundary
from clockpizza.results.paper_compare import PAPER_WIDTH, medians_by_width
from clockpizza.results.selection import main_runs

PS_FIG1, PS_FIG2 = "paper_scale_fig1_w128", "paper_scale_fig2_phase_diagram"
PS_FIGURES = (PS_FIG1, PS_FIG2)
# How to make (or grow) the shipped results: the command the report names when there are none.
PS_COMMAND = ("python -m clockpizza.tools.paper_scale --preset paper_cpu_narrow "
              "--out results/paper_cpu_narrow")


def paper_scale_recipes(runs: pd.DataFrame, boundary: Boundary | None,
                        published: pd.DataFrame | None) -> dict[str, FigureRecipe]:
    """Figure 1 at the shipped width nearest 128 and figure 2 over the shipped widths, not yet
    drawn; none without shipped one-layer runs."""
    main = main_runs(runs)
    if main.empty:
        return {}
    out = {PS_FIG1: partial(fixed_width, main, PAPER_WIDTH, published)}
    if main["width"].nunique() > 1:
        out[PS_FIG2] = partial(phase_diagram, main, boundary)
    return out


def _f(x: object) -> str:
    return "n/a" if x is None or pd.isna(x) else f"{float(x):.3f}"


def _source_row(s: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": s["name"], "runs": s["runs"],
        "widths": ", ".join(map(str, s["widths"])), "seeds": ", ".join(map(str, s["seeds"])),
        "alphas": s["attn_rates"], "steps": ", ".join(f"{x:,}".replace(",", " ")
                                                      for x in s["steps"]),
        "protocol": "own weights and split per run" if s["own_weights_and_split"]
        else "shared start",
        "machine": "; ".join(s["devices"]) + " (" + "; ".join(s["cpus"]) + ", "
                   + "/".join(map(str, s["threads"]))
                   + (" thread)" if s["threads"] == [1] else " threads)"),
        "engine": "/".join(s["engines"]) + ", " + "/".join(s["precisions"]),
        "hours": s["train_hours"], "commits": ", ".join(c[:10] + ("+dirty" if "dirty" in c else "")
                                                        for c in s["commits"]),
        "command": s["command"], "helpers": s.get("helper_commands", 0),
    }


def paper_scale_context(runs: pd.DataFrame, summary: Mapping[str, Any],
                        figures: Mapping[str, str]) -> dict[str, Any]:
    """The section's numbers: ``runs`` (metrics/paper_scale_runs.parquet), ``summary``
    (metrics/paper_scale.json), ``figures`` the stems drawn -> paths."""
    main = main_runs(runs)
    ctx: dict[str, Any] = {"n": len(main), "command": PS_COMMAND,
                           "sources": [_source_row(s) for s in summary.get("sources", [])],
                           "fig1": None, "fig2": None, "tenths": None, "medians": None,
                           "boundary": None, "pizza_di": None, "pizza_di_steps": None,
                           "unlearned": [], "your_run": None}
    if main.empty:
        return ctx
    widths = sorted(int(w) for w in main["width"].unique())
    med = medians_by_width(main)
    rows = []
    for a, g in med.groupby("attn_rate", sort=True):
        by_w = g.set_index("width")
        rows.append({"alpha": a, "cells": [
            (f"{by_w.loc[w, 'gs_median']:.2f} / {by_w.loc[w, 'di_median']:.2f} "
             f"({int(by_w.loc[w, 'runs'])})") if w in by_w.index else "–" for w in widths]})
    ctx.update({"widths": widths, "medians": rows,
                "fig1": figures.get(PS_FIG1), "fig2": figures.get(PS_FIG2)})
    shares = summary.get("phase_share_by_width", {})
    ctx["shares"] = [{"width": w, **{k.replace("-", "_"): shares.get(str(w), {}).get(k)
                                     for k in ("pizza", "clock", "non-circular")}}
                     for w in widths]
    b = summary.get("boundary", {})
    ctx["boundary"] = {
        "fitted": b.get("intercept") is not None,
        "by_width": [{"width": w, "alpha": _f(summary["transition_by_width"].get(str(w)))}
                     for w in widths],
        "alpha_128": _f(b.get("transition_attn_rate")),
        "lo": _f(b.get("transition_attn_rate_lo")), "hi": _f(b.get("transition_attn_rate_hi")),
        "shift": b.get("alpha_shift_per_doubling"), "n_runs": b.get("n_runs"),
        "extrapolated": b.get("extrapolated"),
    }
    ctx["tenths"] = summary.get("paper_tenths")  # computed once, by the summarise stage
    pz = summary.get("pizza_di", {})
    ours = sorted((k for k in pz if k.startswith("ours_w")),
                  key=lambda k: int(k.removeprefix("ours_w")))
    ctx["pizza_di"] = [{"who": ("the paper, width 128" if k == "paper_w128"
                                else f"ours, width {k.removeprefix('ours_w')}"),
                        **{q: _f(pz[k][q]) for q in ("q25", "median", "q75")}, "n": pz[k]["n"]}
                       for k in [*ours, *(k for k in pz if k not in ours)]]
    by_step = summary.get("pizza_di_by_step", {})
    steps = sorted({int(k) for v in by_step.values() for k in v})
    ctx["pizza_di_steps"] = {"steps": steps, "rows": [
        {"width": int(w), "cells": [_f(v.get(str(k))) for k in steps]}
        for w, v in sorted(by_step.items(), key=lambda kv: int(kv[0]))]} if steps else None
    ctx["unlearned"] = [{"width": int(w), **v} for w, v in
                        sorted(summary.get("unlearned_by_width", {}).items(),
                               key=lambda kv: int(kv[0]))]
    yours = summary.get("your_run") or {}
    ctx["your_run"] = {**yours, "rows": [
        {**r, **{k: _f(r[k]) for k in ("gs", "di", "gs_near", "di_near", "gs_end", "di_end")}}
        for r in yours["rows"]]} if yours else None
    ctx["gs"], ctx["di"] = GS, DI
    return ctx
