"""Which runs each figure, fit and report section reads. Torch-free.

The runs table grows grid axes over time (``family``, ``diff_vocab``, ``eqn_sign``); a table
written before they existed is read as if every run had the default value, so that figures 1 and
2, the fitted boundary and the report work on old and new tables alike.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TRANSFORMER = "transformer"
# The phase labels of the runs table, here once (clockpizza.results.phases decides them).
PIZZA, CLOCK, NON_CIRCULAR = "pizza", "clock", "non-circular"
PHASES = (PIZZA, CLOCK, NON_CIRCULAR)
ABLATIONS = ("diff_vocab", "eqn_sign")
# Paper setting of each axis: a run at these values is a "main" run (figures 1 and 2).
AXIS_DEFAULTS: dict[str, object] = {
    "family": TRANSFORMER,
    "n_layers": 1,
    "diff_vocab": False,
    "eqn_sign": False,
}
# The attention-free family of the appendix, in the paper's order; others sort after these.
MLP_ORDER = ("A", "B", "C", "D", "X")


def with_axis_defaults(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with every axis of :data:`AXIS_DEFAULTS` present and no missing values in them.

    A missing column, or a missing value in one (e.g. after concatenating an old and a new
    table), means the default: the paper's setting.
    """
    out = runs.copy()
    for col, default in AXIS_DEFAULTS.items():
        if col not in out.columns:
            out[col] = default
        else:
            out[col] = out[col].where(out[col].notna(), default)
    for col in ABLATIONS:
        out[col] = out[col].astype(bool)
    out["n_layers"] = out["n_layers"].astype("int64")
    return out


def transformers(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs of the attention-rate transformer family (any depth, any ablation)."""
    runs = with_axis_defaults(runs)
    return runs[(runs["family"] == TRANSFORMER) & runs["attn_rate"].notna()]


def unablated(runs: pd.DataFrame) -> pd.DataFrame:
    """Transformer runs without ablations (any depth): the data of the per-layer figure."""
    t = transformers(runs)
    return t[~t["diff_vocab"] & ~t["eqn_sign"]]


def main_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """1-layer transformers without ablations: figures 1 and 2 and the fitted boundary.

    When both activations are in the table only the paper's (ReLU) is kept, so a GeLU
    experiment beside it is never pooled into the main figures.
    """
    u = unablated(runs)
    main = u[u["n_layers"] == 1]
    if "act" in main.columns and (main["act"] == "relu").any():
        main = main[main["act"] == "relu"]
    return main


def mlp_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs of the attention-free family (models A..X)."""
    runs = with_axis_defaults(runs)
    return runs[runs["family"] != TRANSFORMER]


def mlp_order(families: pd.Series) -> list[str]:
    """The family models present, in the paper's order A, B, C, D, X (others after, sorted)."""
    present = set(families.astype(str))
    return [f for f in MLP_ORDER if f in present] + sorted(present - set(MLP_ORDER))


def ablation_label(diff_vocab: bool, eqn_sign: bool) -> str:
    on = [name for name, flag in zip(ABLATIONS, (diff_vocab, eqn_sign), strict=True) if flag]
    return " + ".join(on) if on else "no ablation"


def layers_label(n: int) -> str:
    return f"{n} layer" if n == 1 else f"{n} layers"


def nearest_width(runs: pd.DataFrame, width: int) -> int:
    """The width in the table nearest to ``width`` on a log scale (ties: the larger)."""
    widths = np.array(sorted(runs["width"].unique()))
    if widths.size == 0:
        raise ValueError("the runs table is empty: nothing to draw")
    dist = np.abs(np.log2(widths) - np.log2(width))
    return int(widths[np.flatnonzero(dist == dist.min())[-1]])
