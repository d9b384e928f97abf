"""The metrics stage's training dynamics: every run's snapshots (``train.snapshots``) measured.

One row per run × snapshot step (:data:`clockpizza.io.table.DYNAMICS_SCHEMA`): the losses and
accuracies on the run's own split, GS (the paper's triples), both DIs and circularity; the
summarise stage adds each snapshot's phase (:func:`clockpizza.results.dynamics.snapshot_phase`).
Skipped at snapshots, for time: the per-circle analysis (the slowest metric: it refits every
circle's logit tensor against three templates) and the all-triples GS; both stay in the runs
table for the final weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from clockpizza.analysis.metrics import gs_triples, model_metrics
from clockpizza.io.params import Params
from clockpizza.io.store import CONFIG, HISTORY, read_snapshots
from clockpizza.science.architectures import load_model, model_config, param_shapes
from clockpizza.science.model import stack
from clockpizza.science.runs import train_mask
from clockpizza.science.spec import grid_groups, shape_groups

COLUMNS = ("run_id", "step", "train_loss", "test_loss", "train_acc", "test_acc",
           "gradient_symmetricity", "distance_irrelevance", "distance_irrelevance_correct",
           "circularity")


@torch.no_grad()
def collect_dynamics(params: Params, runs_root: str | Path, dataset: pd.DataFrame,
                     device: torch.device) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(dynamics table, per-run ``full_test_acc_step``) of every run of the grid in params.

    ``full_test_acc_step`` is the first step of the run's history with test accuracy 1 (-1
    when it never gets there). Runs trained before snapshots existed have none: they add no
    rows (the metrics stage still measures their final weights).
    """
    p = params.data.p
    steps = list(params.train.snapshot_steps)
    triples = gs_triples(p, params.metrics.gs_triples, params.metrics.gs_seed) \
        if params.metrics.gs_triples else None
    frames, first_full = [], []
    for name, group in grid_groups(params):
        for specs in shape_groups(group):
            cfg = model_config(specs[0])
            dirs = [Path(runs_root) / name / s.run_id for s in specs]
            for spec, d in zip(specs, dirs, strict=True):
                hist = pd.read_parquet(d / HISTORY)
                full = hist.loc[hist["test_acc"] >= 1.0, "step"]
                first_full.append({"run_id": spec.run_id,
                                   "full_test_acc_step": int(full.min()) if len(full) else -1})
            kept = set(steps)
            for d in dirs:  # what each run kept (a run trained without snapshots kept none)
                config = json.loads((d / CONFIG).read_text())
                kept &= set(config.get("snapshots", []))
            group_steps = sorted(kept)
            if not group_steps:
                continue
            snaps = [read_snapshots(d, param_shapes(cfg), group_steps) for d in dirs]
            is_train = torch.stack([train_mask(s, dataset, params.data.train_frac)
                                    for s in specs]).to(device)
            s0 = specs[0]
            for step in group_steps:
                # a diverged run's non-finite snapshots are left out, not measured
                ok = [i for i, snap in enumerate(snaps)
                      if all(bool(torch.isfinite(w).all()) for w in snap[step].values())]
                if not ok:
                    continue
                model = load_model(cfg, stack([snaps[i][step] for i in ok]),
                                   [specs[i].attn_rate for i in ok]).to(device)
                values = model_metrics(model, p, triples, params.metrics.n_components,
                                       is_train[ok], diff_vocab=s0.diff_vocab,
                                       eqn_sign=s0.eqn_sign, exact=False)
                cols = {k: values[k].detach().cpu().tolist() for k in COLUMNS[2:]}
                frames.append(pd.DataFrame({"run_id": [specs[i].run_id for i in ok],
                                            "step": step, **cols}))
    dynamics = (pd.concat(frames, ignore_index=True) if frames
                else pd.DataFrame(columns=list(COLUMNS)))
    return dynamics, pd.DataFrame(first_full, columns=["run_id", "full_test_acc_step"])
