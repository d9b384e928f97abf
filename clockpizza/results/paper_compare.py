"""Our runs against the paper's published ones: medians per α tenth at the paper's width.

The authors' per-run table behind their figure 1 (``paper/published_runs_fixed_width.csv``, MIT,
``paper/LICENSE``) holds width-128 runs with α drawn uniformly; its one-layer ReLU runs without
ablations (2 381 with metrics) are the paper's fixed-width result. Its GS uses the paper's 100
triples and its DI the largest incorrect logit, i.e. our ``gradient_symmetricity`` and
``distance_irrelevance`` columns (docs/specification.md, "Metrics"), so the two compare directly.
The paper
gave no seeds, so its runs are binned by α tenth (0-0.1, ..., 0.9-1; α = 1 in the last).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

import numpy as np
import pandas as pd

from clockpizza.io.params import PhaseConfig
from clockpizza.results.selection import main_runs, nearest_width

PUBLISHED_CSV = Path("paper/published_runs_fixed_width.csv")
PAPER_WIDTH = 128
GS, DI = "gradient_symmetricity", "distance_irrelevance"
# The authors' notebook names these two Model A (α = 0, a pizza) and Model B (α = 1, a clock).
PAPER_EXAMPLES = {"pizza": "p99zdpze5l", "clock": "l8k1hzciux"}
# Tolerances of the summary's `paper` block: a tenth matches when both medians are this close.
TOL_GS, TOL_DI = 0.10, 0.15
MATCH_DRAWS = 2000  # random draws behind each tenth's chance of a match (match_chance)
# The published runs under our rule: the DI limit of the earlier rule (a pizza needed DI ≤ 0.6),
# weighed over the α the paper calls pizza (below 0.5).
EARLIER_MAX_DI, LOW_ALPHA_MAX = 0.6, 0.5
_COLUMNS = {"attn_coeff": "attn_rate", "d_model": "width", "gradient_sim": GS,
            "distance_irrelevance": DI, "circularity": "circularity",
            "validation_accuracy": "test_acc"}


def read_published_runs(path: str | Path = PUBLISHED_CSV) -> pd.DataFrame:
    """The paper's one-layer ReLU width-128 runs without ablations that have metrics, in our
    column names (``attn_rate``, ``width``, GS, DI, ``circularity``, ``test_acc``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (the authors' published table, kept in git "
                                "under paper/)")
    raw = pd.read_csv(path)
    missing = [c for c in (*_COLUMNS, "n_layers", "act_fn", "diff_vocab", "eqn_sign")
               if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    keep = ((raw["n_layers"] == 1) & (raw["act_fn"] == "ReLU") & (raw["diff_vocab"] == 0)
            & (raw["eqn_sign"] == 0) & (raw["d_model"] == PAPER_WIDTH))
    out = raw.loc[keep, list(_COLUMNS)].rename(columns=_COLUMNS)
    out = out.dropna(subset=[GS, DI]).sort_values(["attn_rate", GS, DI], kind="stable")
    return out.reset_index(drop=True)


def alpha_tenth(alpha: pd.Series) -> pd.Series:
    """0 for α in [0, 0.1), ..., 9 for [0.9, 1]."""
    return np.clip(np.floor(alpha.to_numpy(dtype=float) * 10 + 1e-9), 0, 9).astype(int)


def _stats(df: pd.DataFrame, col: str) -> tuple[float, float, float]:
    if df.empty:
        return math.nan, math.nan, math.nan
    q = df[col].quantile([0.25, 0.5, 0.75])
    return float(q[0.5]), float(q[0.25]), float(q[0.75])


def tenth_table(runs: pd.DataFrame, published: pd.DataFrame, width: int) -> pd.DataFrame:
    """One row per α tenth: the paper's count, median and IQR of GS and DI, ours at ``width``
    (the one-layer runs without ablations), and whether both medians are within tolerance."""
    ours = main_runs(runs)
    ours = ours[ours["width"] == width]
    ours_t, paper_t = alpha_tenth(ours["attn_rate"]), alpha_tenth(published["attn_rate"])
    rows = []
    for t in range(10):
        o, p = ours[ours_t == t], published[paper_t == t]
        row: dict[str, object] = {"tenth": t, "alpha_lo": t / 10, "alpha_hi": (t + 1) / 10,
                                  "paper_runs": len(p), "our_runs": len(o)}
        for name, col in (("gs", GS), ("di", DI)):
            med, lo, hi = _stats(p, col)
            row |= {f"paper_{name}_median": med, f"paper_{name}_q25": lo,
                    f"paper_{name}_q75": hi, f"our_{name}_median": _stats(o, col)[0]}
        row["within"] = bool(len(o) and len(p)
                             and abs(row["our_gs_median"] - row["paper_gs_median"]) <= TOL_GS
                             and abs(row["our_di_median"] - row["paper_di_median"]) <= TOL_DI)
        rows.append(row)
    return pd.DataFrame(rows)


def match_chance(paper: pd.DataFrame, n: int, *, draws: int = MATCH_DRAWS, seed: int = 0) -> float:
    """The chance that the medians of ``n`` runs drawn at random from ``paper`` (the published
    runs of one α tenth) pass :func:`tenth_table`'s test against ``paper``'s own medians: what
    "match" scores for a grid that behaves exactly like the paper's, with that many runs.
    With few runs a tenth, the spread of the paper's DI (an IQR of 0.4 in the pizza tenths)
    fails many such draws; the report prints this beside each tenth."""
    if n <= 0 or paper.empty:
        return math.nan
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(paper), size=(draws, n))
    ok = np.ones(draws, dtype=bool)
    for col, tol in ((GS, TOL_GS), (DI, TOL_DI)):
        values = paper[col].to_numpy(dtype=float)
        ok &= np.abs(np.median(values[picks], axis=1) - np.median(values)) <= tol
    return float(ok.mean())


def at_most_chance(chances: Sequence[float], k: int) -> float:
    """The chance of ``k`` or fewer matches when each tenth matches independently with its
    :func:`match_chance` (the Poisson-binomial distribution, by convolution)."""
    dist = np.array([1.0])
    for p in chances:
        dist = np.convolve(dist, [1.0 - p, p])
    return float(dist[: k + 1].sum())


def compared_width(runs: pd.DataFrame) -> int | None:
    """The grid width compared with the paper's 128: 128 itself, else the nearest one."""
    main = main_runs(runs)
    return None if main.empty else int(nearest_width(main, PAPER_WIDTH))


def paper_block(runs: pd.DataFrame, published: pd.DataFrame) -> dict[str, object]:
    """summary.json's ``paper`` block: the share of α tenths (among those where both we and the
    paper have runs) where our GS and DI medians are within 0.10 and 0.15 of the paper's, at
    the grid width nearest 128 (``width``; ``exact_width`` false when it is not 128)."""
    w = compared_width(runs)
    if w is None:
        return {"width": None, "exact_width": False, "tenths_compared": 0,
                "share_within": None}
    table = tenth_table(runs, published, w)
    both = table[(table["our_runs"] > 0) & (table["paper_runs"] > 0)]
    share = round(float(both["within"].mean()), 6) if len(both) else None
    return {"width": w, "exact_width": w == PAPER_WIDTH, "tenths_compared": len(both),
            "share_within": share, "tol_gs": TOL_GS, "tol_di": TOL_DI}


class PublishedPhases(TypedDict):
    """metrics/published_phases.json (:func:`published_phases`); null where a tenth is empty."""

    thresholds: dict[str, float]  # the phase rule's, from params.yaml
    earlier_max_di: float  # :data:`EARLIER_MAX_DI`
    low_alpha_max: float  # :data:`LOW_ALPHA_MAX`
    runs: int  # the published runs read
    low: dict[str, float | int | None]  # pizza_gs, pizza_gs_di, symmetric_high_di below it
    tenths: list[dict[str, float | int | None]]  # :func:`published_phase_shares`' rows


def published_phases(published: pd.DataFrame, rule: PhaseConfig) -> PublishedPhases:
    """Our rule on the paper's runs, for the report (``metrics/published_phases.json``): the
    thresholds used, :func:`published_phase_shares` per tenth (NaN as null), and the shares
    below α = :data:`LOW_ALPHA_MAX`, each tenth weighed by its runs."""
    shares = published_phase_shares(published, rule.pizza_min_gs, EARLIER_MAX_DI,
                                    rule.min_circularity, rule.min_test_acc)
    low = shares[shares["alpha_hi"] <= LOW_ALPHA_MAX]
    weights = low["runs"] / low["runs"].sum()

    def number(x: float | int) -> float | int | None:
        return None if isinstance(x, float) and math.isnan(x) else x

    return {
        "thresholds": {"pizza_min_gs": rule.pizza_min_gs, "pizza_max_di": rule.pizza_max_di,
                       "min_circularity": rule.min_circularity,
                       "min_test_acc": rule.min_test_acc},
        "earlier_max_di": EARLIER_MAX_DI, "low_alpha_max": LOW_ALPHA_MAX,
        "runs": len(published),
        "low": {"pizza_gs": number(float((low["pizza_gs"] * weights).sum())),
                "pizza_gs_di": number(float((low["pizza_gs_di"] * weights).sum())),
                "symmetric_high_di": int(low["symmetric_high_di"].sum())},
        "tenths": [{k: number(v.item() if isinstance(v, np.generic) else v)
                    for k, v in row.items()} for row in shares.to_dict("records")],
    }


def medians_by_width(runs: pd.DataFrame) -> pd.DataFrame:
    """GS and DI medians over seeds per (width, α) of the main grid: the DVC data plot's rows,
    one line per width (``metrics/plots/medians.csv``)."""
    main = main_runs(runs)
    g = main.groupby(["width", "attn_rate"], sort=True)
    out = pd.DataFrame({"gs_median": g[GS].median(), "di_median": g[DI].median(),
                        "runs": g.size()}).reset_index()
    return out[["width", "attn_rate", "gs_median", "di_median", "runs"]]


def published_phase_shares(published: pd.DataFrame, min_gs: float, max_di: float,
                           min_circularity: float, min_test_acc: float) -> pd.DataFrame:
    """Our phase rule's GS/DI part applied to the paper's runs, per α tenth: the share labelled
    pizza with GS ≥ ``min_gs`` alone and with DI ≤ ``max_di`` also required, and the share
    non-circular (the published table has no per-circle analysis, so the circles' verdict is
    not available here)."""
    learned = ((published["test_acc"] >= min_test_acc)
               & (published["circularity"] >= min_circularity))
    symmetric = published[GS] >= min_gs
    t = alpha_tenth(published["attn_rate"])
    rows = []
    for k in range(10):
        at = t == k
        n = int(at.sum())
        rows.append({"tenth": k, "alpha_lo": k / 10, "alpha_hi": (k + 1) / 10, "runs": n,
                     "non_circular": float((~learned[at]).mean()) if n else math.nan,
                     "pizza_gs": float((learned & symmetric)[at].mean()) if n else math.nan,
                     "pizza_gs_di": float((learned & symmetric
                                           & (published[DI] <= max_di))[at].mean())
                     if n else math.nan,
                     "symmetric_high_di": int((learned & symmetric
                                               & (published[DI] > max_di))[at].sum())})
    return pd.DataFrame(rows)
