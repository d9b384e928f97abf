"""Constructed runs tables with a planted phase boundary, for figure and report tests.

Every table has exactly the columns of ``clockpizza.io.table.RUN_COLUMNS`` plus the grid axes
``family``, ``diff_vocab`` and ``eqn_sign`` (``legacy=True`` leaves those three out, as in a
table written before they existed). Phases come from the project's own rule
(``clockpizza.results.phases.classify``) applied to GS/DI values drawn on the side of the
planted line α*(w) that each run falls on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from clockpizza.io.params import PhaseConfig
from clockpizza.io.table import RUN_COLUMNS
from clockpizza.results.phases import classify

RULE = PhaseConfig(min_test_acc=0.99, min_circularity=0.7, pizza_min_gs=0.9, pizza_max_di=0.6,
                   circle_majority=0.8)
NEW_AXES = ("family", "diff_vocab", "eqn_sign")
ALPHAS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def planted_alpha_star(width: np.ndarray | float, n_layers: int = 1) -> np.ndarray:
    """The planted line: midway between grid points of step 0.1 at widths 32, 64, 128, ...

    α*(32) = 0.25, α*(64) = 0.45, α*(128) = 0.65; deeper models leave the pizza phase earlier.
    """
    w = np.asarray(width, dtype=np.float64)
    return 0.25 + 0.2 * np.log2(w / 32.0) - 0.1 * (n_layers - 1)


def _transformer_rows(alphas: Sequence[float], widths: Sequence[int], seeds: Sequence[int],
                      n_layers: int, diff_vocab: bool, eqn_sign: bool, non_circular: float,
                      rng: np.random.Generator) -> pd.DataFrame:
    a, w, s = (x.ravel() for x in np.meshgrid(alphas, widths, seeds, indexing="ij"))
    n = a.size
    pizza = a < planted_alpha_star(w, n_layers)
    broken = rng.random(n) < non_circular
    return pd.DataFrame({
        "attn_rate": a.astype(float), "width": w.astype(np.int64), "seed": s.astype(np.int64),
        "n_layers": n_layers, "family": "transformer", "diff_vocab": diff_vocab,
        "eqn_sign": eqn_sign,
        "gradient_symmetricity": np.where(pizza, 0.99 - 0.01 * rng.random(n),
                                          0.35 + 0.3 * rng.random(n)),
        "distance_irrelevance": np.where(pizza, 0.3 + 0.15 * rng.random(n),
                                         0.75 + 0.2 * rng.random(n)),
        "circularity": np.where(broken, 0.3 + 0.3 * rng.random(n), 0.85 + 0.1 * rng.random(n)),
    })


# GS / DI centres of each attention-free model, pizza-like or clock-like.
MLP_CENTRES = {"A": (0.99, 0.35), "B": (0.98, 0.4), "C": (0.6, 0.8), "D": (0.97, 0.45),
               "X": (0.55, 0.85)}


def _mlp_rows(families: Iterable[str], seeds: Sequence[int], width: int,
              rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for fam in families:
        gs, di = MLP_CENTRES[fam]
        for s in seeds:
            rows.append({"attn_rate": np.nan, "width": width, "seed": s, "n_layers": 1,
                         "family": fam, "diff_vocab": False, "eqn_sign": False,
                         "gradient_symmetricity": min(gs + 0.02 * rng.standard_normal(), 1.0),
                         "distance_irrelevance": di + 0.03 * rng.standard_normal(),
                         "circularity": 0.9})
    return pd.DataFrame(rows)


def make_runs(*, alphas: Sequence[float] = ALPHAS, widths: Sequence[int] = (32, 64),
              seeds: Sequence[int] = (0, 1), layers: Sequence[int] = (1,),
              ablations: Sequence[tuple[bool, bool]] = ((False, False),),
              mlp: Sequence[str] = (), mlp_width: int = 256, non_circular: float = 0.0,
              steps: int = 2000, device: str = "cpu", legacy: bool = False,
              seed: int = 0) -> pd.DataFrame:
    """A runs table: a transformer grid per (depth, ablation setting), plus MLP runs."""
    rng = np.random.default_rng(seed)
    parts = [_transformer_rows(alphas, widths, seeds, n, dv, es, non_circular, rng)
             for n in layers for dv, es in ablations]
    if mlp:
        parts.append(_mlp_rows(mlp, seeds, mlp_width, rng))
    df = pd.concat(parts, ignore_index=True)
    n = len(df)
    df = df.assign(
        run_id=[f"{i:012x}" for i in range(n)], n_heads=4, act="relu", p=59, split_seed=0,
        steps=steps, precision="fp32", engine="fast", device=device,
        train_loss=1e-3 * rng.random(n), test_loss=2e-3 * rng.random(n), train_acc=1.0,
        test_acc=1.0 - 0.001 * rng.random(n), param_norm=20.0 + rng.random(n),
        # Circle evidence left undecided (no typed majority), so GS/DI set the planted phase.
        n_circles=np.where(df["family"] == "transformer", 2, 0),
        dominant_circle_type="none", fve_clock_mean=np.nan, fve_pizza_mean=np.nan,
        clock_circle_share=np.nan, pizza_circle_share=np.nan,
        gs_triples=100, gs_seed=42, init_per_run=False, split_per_run=False,
        # no snapshots in a constructed table (tests/test_dynamics.py trains real ones)
        phase_settle_step=-1, phase_switched=False, gs_settle_step=-1, di_settle_step=-1,
        full_test_acc_step=-1, diverged=False, diverged_step=-1,
    )
    # The text's variants, near the published ones (the correct-logit DI runs a little lower).
    df = df.assign(gradient_symmetricity_exact=df["gradient_symmetricity"],
                   distance_irrelevance_correct=df["distance_irrelevance"] - 0.05,
                   circularity_published=df["circularity"])
    df["phase"] = classify(df, RULE)
    # Once the schema itself carries the new axes, they are not appended a second time.
    cols = [c for c in RUN_COLUMNS if not (legacy and c in NEW_AXES)]
    cols += [] if legacy else [c for c in NEW_AXES if c not in cols]
    return df[cols]


def is_main(runs: pd.DataFrame) -> pd.Series:
    """The paper's main setting, written out here rather than taken from clockpizza."""
    mask = runs["n_layers"] == 1
    if "family" in runs:
        mask &= (runs["family"] == "transformer") & ~runs["diff_vocab"] & ~runs["eqn_sign"]
    return mask
