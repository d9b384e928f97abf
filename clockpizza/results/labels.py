"""The phase labels of measured runs: the summarise stage's cheap half of the runs table.

The metrics stage measures (metrics/measured.parquet, metrics/snapshots.parquet); this module
applies the phase rule in force (``phase:`` of params.yaml) to those tables, without reading a
model. Torch-free. The authors' released models (metrics/paper_measured.parquet, stage
paper_models) and the mid-α experiment's table (results/mid_alpha/mid_alpha.csv) are labelled
here too, by the same rule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clockpizza.io.params import PhaseConfig
from clockpizza.results.dynamics import RUN_COLUMNS, settle_columns, snapshot_phase
from clockpizza.results.phases import classify
from clockpizza.results.selection import NON_CIRCULAR


def label_tables(runs: pd.DataFrame, dynamics: pd.DataFrame,
                 rule: PhaseConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The measured runs and dynamics with their phase labels by ``rule``: the phase of each
    run (a diverged run is non-circular), of each snapshot, and when each run settled. Cheap:
    no model is read."""
    runs = runs.copy()
    full_acc = runs.pop("full_test_acc_step")
    runs["phase"] = classify(runs, rule)
    runs.loc[runs["diverged"], "phase"] = NON_CIRCULAR
    dynamics = dynamics.copy()
    dynamics["phase"] = (snapshot_phase(dynamics, rule) if len(dynamics)
                         else pd.Series(dtype=object))
    settled = settle_columns(dynamics)
    runs = runs.merge(settled, on="run_id", how="left")
    runs["full_test_acc_step"] = full_acc.to_numpy()
    for col in RUN_COLUMNS:
        runs[col] = runs[col].fillna(False if col == "phase_switched" else -1)
    runs["phase_switched"] = runs["phase_switched"].astype(bool)
    return runs, dynamics


def label_paper_models(measured: pd.DataFrame, rule: PhaseConfig) -> pd.DataFrame:
    """The authors' measured models with their phase by ``rule``, as our runs get theirs; the
    accuracy over all p² pairs stands for the test accuracy (the authors' split is unknown)."""
    return measured.assign(phase=classify(measured.assign(test_acc=measured["accuracy"]), rule))


def label_mid_alpha(table: pd.DataFrame, rule: PhaseConfig) -> pd.DataFrame:
    """The mid-α experiment's table (:mod:`clockpizza.tools.mid_alpha`) with ``phase_now``, its
    runs' phase by ``rule`` beside ``phase``, the label of the rule of its time. A table that
    predates the circle shares gets them as NaN: GS and DI decide there."""
    t = table.assign(family="transformer")
    for col in ("clock_circle_share", "pizza_circle_share"):
        if col not in t.columns:
            t[col] = np.nan
    return t.drop(columns="family").assign(phase_now=classify(t, rule))
