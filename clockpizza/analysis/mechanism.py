"""The data of the Model A (pizza) / Model B (clock) figures, specification figure 3, from saved
weights.

Figures never read weights: this module turns the weights of the two example runs into small
tables (token coordinates on the principal components, the correct-logit table, attention
weights), and :mod:`clockpizza.figures.example_plots` draws them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from clockpizza.analysis.circles import principal_components
from clockpizza.analysis.metrics import all_pair_logits, correct_logits
from clockpizza.io.params import Params, ParamsError, RenderConfig
from clockpizza.io.store import RunError
from clockpizza.results.selection import main_runs, nearest_width
from clockpizza.science.data import all_pairs, encode
from clockpizza.science.model import BatchedTransformer, stack
from clockpizza.science.runs import expected_runs, open_run

# Model A of the paper is a pizza (α = 0), Model B a clock (α = 1) (the authors' notebook).
ROLES = {"pizza": 0.0, "clock": 1.0}


def choose_examples(runs: pd.DataFrame, render: RenderConfig) -> dict[str, str]:
    """role -> run_id of the two example runs.

    A run id given in params (``render.clock_run_id``, ``render.pizza_run_id``) must be in the
    runs table. Otherwise: among the 1-layer transformers without ablations at the width
    nearest ``render.fig1_width`` (log scale), those whose attention rate is nearest 1 (clock)
    or 0 (pizza); of these, a run whose phase label is the role if there is one, lowest seed
    first.
    """
    main = main_runs(runs)  # 1-layer transformers without ablations, as figures 1 and 2
    if main.empty:
        raise ValueError("the runs table has no 1-layer transformer without ablations: no "
                         "example runs to draw")
    chosen = {}
    given = {"clock": render.clock_run_id, "pizza": render.pizza_run_id}
    width = nearest_width(main, render.fig1_width)
    pool = main[main["width"] == width]
    for role, alpha in ROLES.items():
        run_id = given[role]
        if run_id is not None:
            if run_id not in set(runs["run_id"]):
                raise ParamsError(f"render.{role}_run_id = {run_id!r}: not a run of the grid in "
                                  "params.yaml (see the run_id column of metrics/runs.parquet)")
            chosen[role] = run_id
            continue
        order = pool.assign(dist=(pool["attn_rate"] - alpha).abs(),
                            other=pool["phase"] != role).sort_values(
            ["dist", "other", "seed", "run_id"])
        chosen[role] = str(order["run_id"].iloc[0])
    return chosen


def run_dirs(params: Params, runs_root: str | Path) -> dict[str, Path]:
    """run_id -> directory, for exactly the grid in params."""
    return {d.name: d for *_, dirs in expected_runs(params, runs_root) for d in dirs}


def load_model(run_dir: Path, run_id: str) -> BatchedTransformer:
    """One saved run as a batch of one model, on the CPU, with its own attention rate."""
    run, cfg = open_run(run_dir)
    if run.config["run_id"] != run_id:
        raise RunError(f"{run_dir}: holds run {run.config['run_id']}, expected {run_id}")
    return BatchedTransformer(cfg, stack([run.weights]), [float(run.config["attn_rate"])])


@torch.no_grad()
def example_tables(model: BatchedTransformer, p: int, role: str, run_id: str,
                   n_pcs: int) -> dict[str, pd.DataFrame]:
    """The three figure tables (schemas in :mod:`clockpizza.io.table`) of a one-model batch.

    - embedding: every token's coordinate on the first ``n_pcs`` principal components of
      ``W_E[:p]`` (the same components as :func:`clockpizza.analysis.circles.find_circles`).
    - correct_logits: ``L(a, b) = logits(a, b)[(a + b) mod p]`` for all p² pairs.
    - attention: for every layer and head, the weights the last position puts on each position,
      for all p² pairs (the last position is the one the logits are read from).
    """
    if model.n_models != 1:
        raise ValueError(f"expected a batch of one model, got {model.n_models}")
    comp = principal_components(model.embed.W_E.detach()[0, :p])
    n = min(n_pcs, comp.scores.shape[1])
    tok, pc = np.meshgrid(np.arange(p), np.arange(n), indexing="ij")
    embedding = pd.DataFrame({"token": tok.ravel(), "pc": pc.ravel(),
                              "value": comp.scores[:, :n].numpy().ravel()})

    a, b = (t.numpy() for t in all_pairs(p))
    table = correct_logits(all_pair_logits(model, p), p)[0].double().numpy()  # [a, b]
    logits = pd.DataFrame({"a": a, "b": b, "s": (a + b) % p, "delta": (a - b) % p,
                           "logit": table.ravel()})

    tokens = encode(*all_pairs(p), p)
    frames = []
    for layer in range(model.cfg.n_layers):
        pattern = model.attention_pattern(tokens, layer)[0, :, :, -1]  # [B, heads, key]
        n_pairs, heads, keys = pattern.shape
        pair, head, key = np.meshgrid(np.arange(n_pairs), np.arange(heads), np.arange(keys),
                                      indexing="ij")
        frames.append(pd.DataFrame({"layer": layer, "head": head.ravel(), "a": a[pair.ravel()],
                                    "b": b[pair.ravel()], "key": key.ravel(),
                                    "weight": pattern.double().numpy().ravel()}))
    attention = pd.concat(frames, ignore_index=True)
    return {name: df.assign(role=role, run_id=run_id)
            for name, df in (("embedding", embedding), ("correct_logits", logits),
                             ("attention", attention))}


def collect_examples(params: Params, runs: pd.DataFrame,
                     runs_root: str | Path) -> dict[str, pd.DataFrame]:
    """The figure tables of both example runs, stacked (pizza rows first)."""
    chosen = choose_examples(runs, params.render)
    dirs = run_dirs(params, runs_root)
    parts: dict[str, list[pd.DataFrame]] = {}
    for role, run_id in chosen.items():
        if run_id not in dirs:
            raise RuntimeError(f"run {run_id} ({role} example) is in the runs table but not in "
                               "the grid of params.yaml; rerun `dvc repro metrics`")
        model = load_model(dirs[run_id], run_id)
        tables = example_tables(model, params.data.p, role, run_id,
                                2 * params.circles.max_circles)
        for name, df in tables.items():
            parts.setdefault(name, []).append(df)
    return {name: pd.concat(dfs, ignore_index=True) for name, dfs in parts.items()}
