"""The metrics stage's work: every run of the grid in params measured, as the runs and circles
tables, and the grid's training wall time."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from clockpizza.analysis.circles import analyse_models, run_summary
from clockpizza.analysis.dynamics import collect_dynamics
from clockpizza.analysis.metrics import gs_triples, model_metrics
from clockpizza.io.params import Params
from clockpizza.io.store import HISTORY, StoredRun
from clockpizza.io.table import CIRCLE_COLUMNS
from clockpizza.results.labels import label_tables
from clockpizza.science.architectures import ArchConfig, load_model, model_config
from clockpizza.science.model import BatchedTransformer, stack
from clockpizza.science.runs import expected_runs, read_spec_run, train_mask
from clockpizza.science.spec import RunSpec, grid_groups, shape_groups
from clockpizza.science.train import resolve_device

log = logging.getLogger(__name__)


def collect_timing(params: Params, runs_root: str | Path) -> dict[str, object]:
    """Training wall time of the grid, from the ``timing`` each run's config.json records.

    The shape read by :func:`clockpizza.figures.report.load_timing`: the total over groups
    and one entry per (width, seed) group (chunks of a group add up).
    """
    groups = []
    for name, dirs in expected_runs(params, runs_root):
        chunks: dict[str, dict[str, object]] = {}
        device = ""
        for d in dirs:
            config = json.loads((d / "config.json").read_text())
            device = str(config.get("device", ""))
            if isinstance(config.get("timing"), dict):
                chunks[str(config["timing"]["chunk"])] = config["timing"]
        groups.append({
            "group": name,
            "wall_s": round(sum(float(c["wall_s"]) for c in chunks.values()), 3),
            "n_models": len(dirs), "steps": params.train.steps, "device": device,
        })
    return {"total_wall_s": round(sum(g["wall_s"] for g in groups), 3), "groups": groups}


@dataclass(frozen=True)
class MetricsTables:
    runs: pd.DataFrame  # a row per run (table.RUNS_SCHEMA)
    circles: pd.DataFrame  # a row per circle of each run (table.CIRCLES_SCHEMA)
    dynamics: pd.DataFrame  # a row per run and snapshot step (table.DYNAMICS_SCHEMA)


_METRIC_NAMES = ("train_loss", "test_loss", "train_acc", "test_acc", "gradient_symmetricity",
                 "gradient_symmetricity_exact", "distance_irrelevance",
                 "distance_irrelevance_correct", "circularity", "circularity_published",
                 "param_norm")


def _finite(weights: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(w).all()) for w in weights.values())


def _diverged_step(run_dir: Path, finite: bool) -> int:
    """The first recorded step at which the training loss is non-finite or above the loss the
    run started from; -1 if it never is. Non-finite weights with a finite history (cannot
    happen unless the last update broke them) count from the last step."""
    hist = pd.read_parquet(run_dir / HISTORY, columns=["step", "train_loss"])
    loss = hist["train_loss"].to_numpy()
    bad = ~np.isfinite(loss) | (loss > loss[0])
    if bad.any():
        return int(hist["step"].to_numpy()[bad.argmax()])
    return -1 if finite else int(hist["step"].iloc[-1])


def _measure(params: Params, dataset: pd.DataFrame, device: torch.device,
             triples: torch.Tensor | None, specs: list[RunSpec], cfg: ArchConfig,
             stored: list[StoredRun]) -> tuple[dict[str, list[float]], list[pd.DataFrame]]:
    """The metrics ({name: [value per run]}) and circles of one shape group's runs."""
    if not specs:
        return {k: [] for k in _METRIC_NAMES}, []
    p, c, s0 = params.data.p, params.circles, specs[0]
    model = load_model(cfg, stack([r.weights for r in stored]),
                       [s.attn_rate for s in specs]).to(device)
    is_train = torch.stack([train_mask(s, dataset, params.data.train_frac)
                            for s in specs]).to(device)  # [M, p²]: a split per run
    values = model_metrics(model, p, triples, params.metrics.n_components, is_train,
                           diff_vocab=s0.diff_vocab, eqn_sign=s0.eqn_sign)
    cols = {k: v.detach().cpu().tolist() for k, v in values.items()}
    if isinstance(model, BatchedTransformer):
        circles = analyse_models(model, p, max_circles=c.max_circles,
                                 min_var_share=c.min_var_share, min_fve=c.min_fve,
                                 type_from=c.type_from,
                                 diff_vocab=s0.diff_vocab, eqn_sign=s0.eqn_sign)
    else:  # the attention-free family: no circle analysis (the templates are for α-models)
        circles = [pd.DataFrame(columns=[k for k in CIRCLE_COLUMNS if k != "run_id"])
                   for _ in specs]
    return cols, circles


def collect_tables(params: Params, runs_root: str | Path, dataset: pd.DataFrame,
                   device: torch.device | None = None) -> MetricsTables:
    """:func:`measure_tables` labelled by ``params.phase`` (:func:`label_tables`): the tables
    the metrics and summarise stages write, in one call (for tools that run both)."""
    measured = measure_tables(params, runs_root, dataset, device)
    runs, dynamics = label_tables(measured.runs, measured.dynamics, params.phase)
    return MetricsTables(runs, measured.circles, dynamics)


def measure_tables(params: Params, runs_root: str | Path, dataset: pd.DataFrame,
                   device: torch.device | None = None) -> MetricsTables:
    """Load every run of the grid, compute its metrics and circles: the expensive part.

    The grid is exactly the one in params: the transformer groups (every combination of the
    transformer axes) and the attention-free models. Every missing or damaged run is reported,
    by name, before any metric is computed. Nothing here reads ``params.phase``: the runs table
    comes back without its phase columns (:data:`clockpizza.io.table.MEASURED_SCHEMA`) and the
    dynamics without the snapshot phase, so a changed phase threshold measures nothing again.
    """
    device = device or resolve_device(params.train.device)
    errors: list[str] = []
    groups = []
    for name, group in grid_groups(params):
        for specs in shape_groups(group):
            cfg = model_config(specs[0])
            stored = []
            for spec in specs:
                try:
                    stored.append(read_spec_run(Path(runs_root) / name / spec.run_id, cfg,
                                           spec.run_id))
                except RuntimeError as e:
                    errors.append(str(e))
            groups.append((specs, cfg, stored))
    if errors:
        raise RuntimeError("the runs of the grid in params.yaml are not all present and whole:\n  "
                           + "\n  ".join(errors))

    p = params.data.p
    n_triples = params.metrics.gs_triples
    triples = gs_triples(p, n_triples, params.metrics.gs_seed) if n_triples else None  # None: all
    rows, circle_frames = [], []
    for specs, cfg, stored in groups:
        # A run whose weights are not finite diverged: it is measured as NaN, not at all.
        ok = [i for i, r in enumerate(stored) if _finite(r.weights)]
        cols, circles = _measure(params, dataset, device, triples, [specs[i] for i in ok], cfg,
                                 [stored[i] for i in ok])
        empty = pd.DataFrame(columns=[k for k in CIRCLE_COLUMNS if k != "run_id"])
        for i, (spec, run) in enumerate(zip(specs, stored, strict=True)):
            j = ok.index(i) if i in ok else None
            circ = circles[j] if j is not None else empty
            diverged_step = _diverged_step(run.path, finite=j is not None)
            diverged = diverged_step >= 0
            if diverged:
                log.warning("run %s (%s, α = %s) diverged at step %d: its training loss became "
                            "non-finite or rose above where it started; labelled non-circular, "
                            "diverged = true", spec.run_id, spec.group, spec.attn_rate,
                            diverged_step)
            circle_frames.append(circ.assign(run_id=spec.run_id))
            rows.append({
                "run_id": spec.run_id, "family": spec.family,
                "attn_rate": float("nan") if spec.attn_rate is None else spec.attn_rate,
                "width": spec.d_model, "seed": spec.init_seed, "n_layers": spec.n_layers,
                "n_heads": spec.n_heads, "act": spec.act, "diff_vocab": spec.diff_vocab,
                "eqn_sign": spec.eqn_sign, "p": p, "split_seed": spec.split_seed,
                "init_per_run": spec.init_per_run, "split_per_run": spec.split_per_run,
                "steps": spec.steps, "precision": spec.precision, "engine": spec.engine,
                "device": run.config["device"],
                **{k: (v[j] if j is not None else float("nan")) for k, v in cols.items()},
                **run_summary(circ),
                "gs_triples": n_triples, "gs_seed": params.metrics.gs_seed if n_triples else -1,
                "diverged": diverged, "diverged_step": diverged_step,
            })
    runs = pd.DataFrame(rows)
    circle_table = pd.concat([f for f in circle_frames if not f.empty] or
                             [pd.DataFrame(columns=list(CIRCLE_COLUMNS))], ignore_index=True)
    dynamics, full_acc = collect_dynamics(params, runs_root, dataset, device)
    runs = runs.merge(full_acc, on="run_id", how="left")
    runs["full_test_acc_step"] = runs["full_test_acc_step"].fillna(-1)
    return MetricsTables(runs, circle_table[list(CIRCLE_COLUMNS)], dynamics)
