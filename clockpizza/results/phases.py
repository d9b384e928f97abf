"""The phase label of a run and the summary of a runs table. Torch-free."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clockpizza.io.params import PhaseConfig
from clockpizza.results.boundary import Boundary, boundary_block
from clockpizza.results.paper_compare import paper_block
from clockpizza.results.selection import CLOCK, NON_CIRCULAR, PHASES, PIZZA


def classify(runs: pd.DataFrame, rule: PhaseConfig) -> pd.Series:
    """The phase of each run, from GS and DI and from the run's circles.

    - non-circular: the model did not learn the task (test accuracy < ``min_test_acc``), its
      embedding is not made of circles (circularity < ``min_circularity``), or the per-circle
      analysis found no circle (``n_circles`` = 0; the attention-free models, which are not
      analysed, are exempt); the paper leaves such runs out of its phase diagrams.
    - Otherwise the circles decide when their evidence is clear: if the clock circles hold at
      least ``circle_majority`` of the variance of all the run's circles
      (``clock_circle_share``), clock; if the pizza and accompanying circles do
      (``pizza_circle_share``), pizza. The circles are the mechanism itself (paper §4-5), GS
      and DI only its signatures, so a clear verdict of the circles wins over them. Circles
      that match no template count against both kinds, so partial evidence never decides.
    - When the circles are mixed or mostly untyped, GS and DI decide: pizza if gradient
      symmetricity ≥ ``pizza_min_gs`` and distance irrelevance ≤ ``pizza_max_di`` (both pizza
      signatures), clock otherwise.
    """
    # The attention-free family has no circle analysis (its rows have no circles): GS/DI decide.
    analysed = (runs["family"] == "transformer" if "family" in runs.columns
                else pd.Series(True, index=runs.index))
    learned = ((runs["test_acc"] >= rule.min_test_acc)
               & (runs["circularity"] >= rule.min_circularity)
               & ((runs["n_circles"] > 0) | ~analysed))
    by_circles = np.where(runs["clock_circle_share"] >= rule.circle_majority, CLOCK,
                          np.where(runs["pizza_circle_share"] >= rule.circle_majority, PIZZA,
                                   ""))
    by_metrics = np.where((runs["gradient_symmetricity"] >= rule.pizza_min_gs)
                          & (runs["distance_irrelevance"] <= rule.pizza_max_di), PIZZA, CLOCK)
    labels = np.where(~learned, NON_CIRCULAR,
                      np.where(by_circles != "", by_circles, by_metrics))
    return pd.Series(labels, index=runs.index, name="phase", dtype=object)


def _r(x: float) -> float | None:
    return None if pd.isna(x) else round(float(x), 6)


def summarize(runs: pd.DataFrame, *, boundary_width: int, boundary: Boundary | None,
              published: pd.DataFrame | None = None) -> dict[str, object]:
    """DVC metrics for ``dvc exp show``: counts, accuracy, medians of GS/DI, phase shares.

    The two ends of the attention-rate grid are summarised separately (GS, DI and the circles'
    mean FVE by Q_clock and Q_pizza), so the trend (pizza at low α, clock at high α) is visible
    in one row per experiment. The ``boundary`` block is the fitted pizza/clock line of figure 2
    (``boundary``, :func:`clockpizza.results.boundary.fit_main` of ``runs``;
    :func:`~clockpizza.results.boundary.boundary_block`), with its transition α read at
    ``boundary_width`` (render.fig1_width). With ``published`` (the paper's runs,
    :func:`clockpizza.results.paper_compare.read_published_runs`) a ``paper`` block says in how
    many α tenths our medians are within tolerance of the paper's
    (:func:`~clockpizza.results.paper_compare.paper_block`).
    """
    out: dict[str, object] = {
        "runs": len(runs),
        "train_acc": _r(runs["train_acc"].mean()),
        "test_acc": _r(runs["test_acc"].mean()),
        "gs_median": _r(runs["gradient_symmetricity"].median()),
        "di_median": _r(runs["distance_irrelevance"].median()),
        "circularity_median": _r(runs["circularity"].median()),
        "phase_share": {ph: _r((runs["phase"] == ph).mean()) for ph in PHASES},
    }
    for name, alpha in (("lowest_attn_rate", runs["attn_rate"].min()),
                        ("highest_attn_rate", runs["attn_rate"].max())):
        at = runs[runs["attn_rate"] == alpha]
        out[name] = {
            "attn_rate": _r(alpha),
            "gs_median": _r(at["gradient_symmetricity"].median()),
            "di_median": _r(at["distance_irrelevance"].median()),
            "fve_clock_median": _r(at["fve_clock_mean"].median()),
            "fve_pizza_median": _r(at["fve_pizza_mean"].median()),
        }
    out["boundary"] = boundary_block(runs, boundary_width, boundary)
    if published is not None:
        out["paper"] = paper_block(runs, published)
    return out
