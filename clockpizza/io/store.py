"""Runs on disk: ``runs/<group>/<run_id>/{model.safetensors, config.json, history.parquet}``
and ``snapshots/step_<step>.safetensors``, the weights at the steps ``train.snapshots`` chose.

``<group>`` is ``w<width>-s<seed>`` for the transformers (every combination of the transformer
axes of that width and seed) and ``mlp-<model>-s<seed>`` for an attention-free model.

A run directory is written complete under a temporary name and renamed into place, so a run
directory that exists is whole; reading one checks every file and names the broken one.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import safetensors
import torch
from safetensors.torch import load_file, save

from clockpizza.io.table import write_json

WEIGHTS, CONFIG, HISTORY = "model.safetensors", "config.json", "history.parquet"
SNAPSHOTS = "snapshots"  # step_000100.safetensors: the weights after 100 steps (same names)
REQUIRED_CONFIG_KEYS = ("run_id", "attn_rate", "d_model", "n_layers", "n_heads", "p",
                        "init_seed", "split_seed", "act", "device")


class RunError(RuntimeError):
    """A run directory that is missing, incomplete or corrupt; the message names the file."""


def versions() -> dict[str, str]:
    import clockpizza

    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "pandas": pd.__version__,
            "safetensors": safetensors.__version__, "clockpizza": clockpizza.__version__}


def snapshot_name(step: int) -> str:
    return f"step_{step:06d}.safetensors"


def write_run(run_dir: Path, weights: dict[str, torch.Tensor], config: dict[str, object],
              history: pd.DataFrame,
              snapshots: Mapping[int, dict[str, torch.Tensor]] | None = None) -> None:
    """Write one run's files (and its snapshots, by step), atomically as a directory."""
    partial = run_dir.with_name(run_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    save_weights(partial / WEIGHTS, weights, {"run_id": str(config["run_id"])})
    if snapshots:
        (partial / SNAPSHOTS).mkdir()
        for step, w in sorted(snapshots.items()):
            save_weights(partial / SNAPSHOTS / snapshot_name(step), w,
                         {"run_id": str(config["run_id"]), "step": str(step)})
    write_json(partial / CONFIG, config)
    history.to_parquet(partial / HISTORY, index=False)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    os.replace(partial, run_dir)


def save_weights(path: Path, weights: Mapping[str, torch.Tensor],
                 metadata: Mapping[str, str]) -> None:
    """A safetensors file whose bytes depend on the weights and metadata alone.

    safetensors writes its metadata in hash-map order, which changes from process to process,
    so the same weights would hash differently in ``runs/`` and rerun every stage downstream.
    The JSON header is written again with sorted keys: same length, same offsets, same format.
    """
    blob = save(dict(weights), metadata=dict(metadata))
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    padded = text + b" " * (-(len(text)) % 8)  # the data start 8-byte aligned, as safetensors
    path.write_bytes(len(padded).to_bytes(8, "little") + padded + blob[8 + n:])


@dataclass(frozen=True)
class StoredRun:
    path: Path
    config: dict[str, object]
    weights: dict[str, torch.Tensor]


def read_run(run_dir: Path, shapes: Mapping[str, tuple[int, ...]], run_id: str) -> StoredRun:
    """Load and check a run directory; raise RunError naming what is missing or broken.

    ``shapes`` are the tensor names and shapes the run's architecture has (the caller knows the
    architecture; the store only knows files).
    """
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: run directory missing (expected run {run_id}); "
                       "run `dvc repro` to train it")
    for name in (WEIGHTS, CONFIG, HISTORY):
        if not (run_dir / name).is_file():
            raise RunError(f"{run_dir / name}: missing")
    try:
        config = json.loads((run_dir / CONFIG).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{run_dir / CONFIG}: not valid JSON (truncated?): {e}") from e
    if not isinstance(config, dict):
        raise RunError(f"{run_dir / CONFIG}: not a JSON object")
    absent = [k for k in REQUIRED_CONFIG_KEYS if k not in config]
    if absent:
        raise RunError(f"{run_dir / CONFIG}: missing keys {absent}")
    if config["run_id"] != run_id:
        raise RunError(f"{run_dir / CONFIG}: run_id {config['run_id']!r} but the params give "
                       f"{run_id!r}; the directory is stale, rerun `dvc repro`")
    try:
        weights = load_file(str(run_dir / WEIGHTS))
    except Exception as e:  # safetensors raises its own error types for truncated headers
        raise RunError(f"{run_dir / WEIGHTS}: unreadable (truncated or corrupt): {e}") from e
    if {k: tuple(v.shape) for k, v in weights.items()} != dict(shapes):
        raise RunError(f"{run_dir / WEIGHTS}: tensor names/shapes do not match the config")
    try:
        pd.read_parquet(run_dir / HISTORY)
    except Exception as e:  # pyarrow raises several error types for a damaged file
        raise RunError(f"{run_dir / HISTORY}: unreadable (truncated or corrupt): {e}") from e
    return StoredRun(run_dir, config, weights)


def read_snapshots(run_dir: Path, shapes: Mapping[str, tuple[int, ...]],
                   steps: list[int]) -> dict[int, dict[str, torch.Tensor]]:
    """The run's snapshots at ``steps`` (by step); RunError naming a missing or broken one."""
    out = {}
    for step in steps:
        path = run_dir / SNAPSHOTS / snapshot_name(step)
        if not path.is_file():
            raise RunError(f"{path}: missing (train.snapshots asks for step {step}); "
                           "rerun `dvc repro`")
        try:
            weights = load_file(str(path))
        except Exception as e:
            raise RunError(f"{path}: unreadable (truncated or corrupt): {e}") from e
        if {k: tuple(v.shape) for k, v in weights.items()} != dict(shapes):
            raise RunError(f"{path}: tensor names/shapes do not match the config")
        out[step] = weights
    return out
