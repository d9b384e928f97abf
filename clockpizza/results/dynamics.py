"""When a run becomes a clock or a pizza: settle steps from the dynamics table. Torch-free.

A quantity *settles* at the first snapshot step from which it stays within a tolerance of its
final value (or, for the phase label, equal to its final label) at every later snapshot.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clockpizza.io.params import PhaseConfig
from clockpizza.results.phases import classify
from clockpizza.results.selection import NON_CIRCULAR, main_runs

GS, DI = "gradient_symmetricity", "distance_irrelevance"
SETTLE_TOL = 0.02  # GS and DI settle within this of their final values
RUN_COLUMNS = ("phase_settle_step", "phase_switched", "gs_settle_step", "di_settle_step")


def snapshot_phase(dynamics: pd.DataFrame, rule: PhaseConfig) -> pd.Series:
    """The phase rule without its circle verdict (snapshots have no circle analysis):
    non-circular below the accuracy or circularity thresholds, else pizza by GS/DI, else
    clock."""
    return classify(dynamics.assign(family="snapshot", n_circles=1,
                                    clock_circle_share=np.nan, pizza_circle_share=np.nan),
                    rule)


def settle_step(steps: np.ndarray, values: np.ndarray, tol: float | None) -> int:
    """The first step from which ``values`` stay at their final value (within ``tol``; equal
    when ``tol`` is None) up to the end."""
    final = values[-1]
    ok = (values == final) if tol is None else (np.abs(values.astype(float) - final) <= tol)
    bad = np.flatnonzero(~ok)
    return int(steps[bad[-1] + 1]) if len(bad) else int(steps[0])


def settle_columns(dynamics: pd.DataFrame) -> pd.DataFrame:
    """Per run: the steps at which its phase label, GS and DI settle, and whether the label
    switched between pizza and clock on the way (a non-circular start does not count)."""
    rows = []
    for run_id, g in dynamics.sort_values(["run_id", "step"]).groupby("run_id", sort=True):
        steps = g["step"].to_numpy()
        phases = g["phase"].to_numpy(dtype=object)
        circular = [ph for ph in phases if ph != NON_CIRCULAR]
        rows.append({"run_id": run_id,
                     "phase_settle_step": settle_step(steps, phases, None),
                     "phase_switched": len(set(circular)) > 1,
                     "gs_settle_step": settle_step(steps, g[GS].to_numpy(), SETTLE_TOL),
                     "di_settle_step": settle_step(steps, g[DI].to_numpy(), SETTLE_TOL)})
    return pd.DataFrame(rows, columns=["run_id", *RUN_COLUMNS])


def dynamics_medians(dynamics: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """GS and DI medians over seeds per (width, α, step) of the main grid: the DVC data plot
    ``metrics/plots/dynamics.csv``."""
    keys = main_runs(runs)[["run_id", "width", "attn_rate"]]
    df = dynamics.merge(keys, on="run_id")
    g = df.groupby(["width", "attn_rate", "step"], sort=True)
    out = pd.DataFrame({"gs_median": g[GS].median(), "di_median": g[DI].median(),
                        "runs": g.size()}).reset_index()
    return out[["width", "attn_rate", "step", "gs_median", "di_median", "runs"]]
