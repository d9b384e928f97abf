"""The training stages' work: every run of a (width, seed) instance or attention-free model trained
in memory-sized chunks, checkpointed, and written to the run store."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch

from clockpizza.io.params import (
    Params,
    RunSpec,
    group_specs,
    mlp_group_name,
    mlp_spec,
    shape_groups,
)
from clockpizza.io.store import group_dir, write_run
from clockpizza.science.architectures import model_config
from clockpizza.science.runs import run_config, train_mask
from clockpizza.science.train import (
    SplitTensors,
    describe_device,
    plan_chunks,
    resolve_device,
    train_group,
)

CHECKPOINTS = Path(".checkpoints")
log = logging.getLogger(__name__)


def _train_and_write(params: Params, specs: list[RunSpec], dataset: pd.DataFrame, out: Path,
                     on_progress: Callable[[int], None] | None, checkpoints: Path) -> list[Path]:
    """Train ``specs`` one shape group after another and write each run under ``out``.

    A shape group (one combination of the non-α axes) is trained in chunks that fit half the
    free device memory (``train.max_models`` caps them). Each chunk checkpoints to
    ``checkpoints/`` so an interrupted stage resumes; the checkpoints are removed once every run
    of the instance is written. ``on_progress(model_steps)`` counts over all chunks.
    """
    t = params.train
    device = resolve_device(t.device)
    where = describe_device(device)
    paths: list[Path] = []
    ckpts: list[Path] = []
    done = 0
    for group in shape_groups(specs):
        s0 = group[0]
        data = group_data(group, dataset, params.data.p, params.data.train_frac, device)
        cfg = model_config(s0)
        for chunk in plan_chunks(len(group), cfg, len(data.y_train), device, t.max_models):
            part = [group[i] for i in chunk]
            ckpt = checkpoints / f"{out.name}-{chunk_id(part)}.pt"
            ckpts.append(ckpt)
            started = time.perf_counter()
            result = train_group(part, data.select(chunk), device, eval_every=t.eval_every,
                                 on_progress=_offset(on_progress, done, len(part)),
                                 checkpoint=ckpt, checkpoint_seconds=60 * t.checkpoint_minutes,
                                 snapshot_at=t.snapshot_steps)
            timing = {"chunk": chunk_id(part), "n_models": len(part),
                      "wall_s": round(time.perf_counter() - started, 3),
                      "resumed_from": result.resumed_from}
            if result.resumed_from:
                log.info("%s: resumed %d models from the checkpoint at step %d", ckpt,
                         len(part), result.resumed_from)
            for i, spec in enumerate(part):
                config = run_config(spec, cfg, width=spec.d_model, seed=spec.init_seed,
                                    device=where, eval_every=t.eval_every) | {
                    "timing": timing, "snapshots": sorted(result.snapshots)}
                path = out / spec.run_id
                write_run(path, result.model.model_params(i), config, result.history[i],
                          result.model_snapshots(i))
                paths.append(path)
            done += len(part) * s0.steps
            del result  # free this chunk's weights before the next one
    for ckpt in ckpts:
        ckpt.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # only if empty: another instance may be training
        checkpoints.rmdir()
    return paths


def _offset(on_progress: Callable[[int], None] | None, base: int,
            n_models: int) -> Callable[[int], None] | None:
    """Turn one chunk's step count into model-steps done over all chunks."""
    if on_progress is None:
        return None
    return lambda step: on_progress(base + n_models * step)


def chunk_id(specs: list[RunSpec]) -> str:
    """A short hash naming the checkpoint of exactly these runs."""
    return hashlib.sha256(",".join(s.run_id for s in specs).encode()).hexdigest()[:12]


def train_and_save(params: Params, width: int, seed: int, dataset: pd.DataFrame,
                   runs_root: str | Path,
                   on_progress: Callable[[int], None] | None = None,
                   checkpoints: Path = CHECKPOINTS) -> list[Path]:
    """Train the (width, seed) transformer instance and write every run.

    Every combination of the transformer axes (n_layers, act, diff_vocab, eqn_sign) is one batch
    of all attention rates; the batches train one after another.
    """
    return _train_and_write(params, group_specs(params, width, seed), dataset,
                            group_dir(runs_root, width, seed), on_progress, checkpoints)


def train_mlp_and_save(params: Params, model: str, seed: int, dataset: pd.DataFrame,
                       runs_root: str | Path,
                       on_progress: Callable[[int], None] | None = None,
                       checkpoints: Path = CHECKPOINTS) -> list[Path]:
    """Train attention-free model ``model`` (A..X) from init seed ``seed`` and write the run."""
    return _train_and_write(params, [mlp_spec(params, model, seed)], dataset,
                            Path(runs_root) / mlp_group_name(model, seed), on_progress,
                            checkpoints)


def group_data(group: Sequence[RunSpec], dataset: pd.DataFrame, p: int, train_frac: float,
               device: torch.device) -> SplitTensors:
    """The tokens of a shape group on the device, with one split per run where asked for."""
    s0 = group[0]
    if not s0.split_per_run:
        return SplitTensors.from_table(dataset, p, device, diff_vocab=s0.diff_vocab,
                                       eqn_sign=s0.eqn_sign)
    return SplitTensors.per_run(dataset, [train_mask(s, dataset, train_frac) for s in group], p,
                                device, diff_vocab=s0.diff_vocab, eqn_sign=s0.eqn_sign)
