"""A trained run described and reopened: the science's side of the run store.

:mod:`clockpizza.io.store` knows files only; this module knows which architecture a run is, so it
writes the config.json that describes a run and reopens a run directory as a model config.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path

import pandas as pd
import torch

from clockpizza.io.params import Params
from clockpizza.io.store import CONFIG, RunError, StoredRun, read_run, versions
from clockpizza.science.architectures import ArchConfig, derived_sizes, model_config, param_shapes
from clockpizza.science.data import make_dataset
from clockpizza.science.spec import RunSpec, grid_groups


def run_config(spec: RunSpec, cfg: ArchConfig, *, width: int, seed: int,
               device: str, eval_every: int) -> dict[str, object]:
    """Everything that defines the run plus where it ran: the config.json beside its weights.

    An attention-free model's ``attn_rate`` is ``null``.
    """
    return {
        "run_id": spec.run_id, **asdict(spec), "width": width, "seed": seed,
        "group": spec.group, **derived_sizes(cfg), "eval_every": eval_every,
        "device": device, "versions": versions(),
    }


def read_spec_run(run_dir: Path, cfg: ArchConfig, run_id: str) -> StoredRun:
    """Load and check the run directory of a run whose architecture is ``cfg``."""
    return read_run(run_dir, param_shapes(cfg), run_id)


def open_run(run_dir: Path) -> tuple[StoredRun, ArchConfig]:
    """A run read from its directory alone: the model's shape comes from its config.json.

    For tools that are handed a run directory rather than params (figures, TransformerLens).
    """
    path = Path(run_dir) / CONFIG
    try:
        config = json.loads(path.read_text())
        spec = RunSpec(**{f.name: config[f.name] for f in fields(RunSpec) if f.name in config})
        cfg = model_config(spec)
        run_id = str(config["run_id"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RunError(f"{path}: unreadable or incomplete ({e})") from e
    return read_spec_run(Path(run_dir), cfg, run_id), cfg


def train_mask(spec: RunSpec, dataset: pd.DataFrame, train_frac: float) -> torch.Tensor:
    """The run's training pairs, ``[p²]`` bool in the dataset's (a, b) order: the dataset's
    split, or with ``split_per_run`` the split seeded from the run's own id."""
    table = make_dataset(spec.p, train_frac, spec.data_split_seed) if spec.split_per_run \
        else dataset
    return torch.as_tensor(table["is_train"].to_numpy(copy=True), dtype=torch.bool)


def expected_runs(params: Params, runs_root: str | Path) -> list[tuple[str, list[Path]]]:
    """(group, run directories) of exactly the grid in params, never a directory glob."""
    return [(name, [Path(runs_root) / name / spec.run_id for spec in specs])
            for name, specs in grid_groups(params)]
