"""Chunks: the unit of training work, and the backends that train them.

A chunk is some runs of one shape group (everything but the attention rate shared) that fit in
memory together and train as one batched model (:func:`train_chunk`). The grid's plan
(:class:`GridPlan`, :func:`clockpizza.science.grid.plan_grid`) is a list of chunk jobs; a backend
trains them and hands each result back to the one process that writes runs: the local backend
here, one chunk after another, or Ray tasks (:mod:`clockpizza.science.distributed`). Both are a
:class:`Backend`, so the grid's loop does not know which one runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from clockpizza.science.runs import train_mask
from clockpizza.science.spec import RunSpec
from clockpizza.science.train import SplitTensors, describe_device, resolve_device, train_group

log = logging.getLogger(__name__)
Progress = Callable[[int], None]  # model-steps done so far


@dataclass(frozen=True)
class Chunk:
    """One unit of work (a Ray task, or one step of the local loop): a chunk of a shape group
    and the settings that train it. Plain values only, so it pickles to a Ray worker."""

    specs: tuple[RunSpec, ...]
    name: str  # <group>-<chunk id>: names its checkpoint and its task
    p: int
    train_frac: float
    eval_every: int
    snapshot_at: tuple[int, ...]
    device: str  # train.device, resolved where the chunk trains
    checkpoint_seconds: float

    @property
    def model_steps(self) -> int:
        return len(self.specs) * self.specs[0].steps


@dataclass
class ChunkResult:
    """A trained chunk as plain CPU tensors and frames: what a Ray task sends back."""

    weights: list[dict[str, torch.Tensor]]  # one {name: tensor} per run, in job order
    history: list[pd.DataFrame]
    snapshots: list[dict[int, dict[str, torch.Tensor]]]
    device: str  # describe_device of where it trained
    wall_s: float
    resumed_from: int = 0


@dataclass
class GridPlan:
    """The runs of a grid still to train, in chunks, and the whole runs that are reused."""

    jobs: list[Chunk]
    reused: list[Path] = field(default_factory=list)

    @property
    def model_steps(self) -> int:
        return sum(j.model_steps for j in self.jobs)

    @property
    def n_runs(self) -> int:
        return sum(len(j.specs) for j in self.jobs)


Runner = Callable[[GridPlan, pd.DataFrame, Progress | None],
                  Iterator[tuple["Chunk", "ChunkResult"]]]


@dataclass(frozen=True)
class Backend:
    """Where the chunks train: the share of a device one chunk may plan for (``plan_device``:
    None for ``train.device`` here), and ``run(plan, dataset, on_progress)``, which yields each
    (job, result) as it is trained."""

    memory_share: float
    plan_device: torch.device | None
    run: Runner


def train_chunk(job: Chunk, dataset: pd.DataFrame, *, checkpoint: Path | None = None,
                on_progress: Callable[[int], None] | None = None,
                device: torch.device | None = None) -> ChunkResult:
    """Train one chunk; ``on_progress(model_steps)`` counts this chunk's model-steps."""
    device = resolve_device(job.device) if device is None else device
    specs = list(job.specs)
    data = group_data(specs, dataset, job.p, job.train_frac, device)
    n = len(specs)
    started = time.perf_counter()
    result = train_group(specs, data, device, eval_every=job.eval_every,
                         on_progress=None if on_progress is None
                         else (lambda step: on_progress(n * step)),
                         checkpoint=checkpoint, checkpoint_seconds=job.checkpoint_seconds,
                         snapshot_at=job.snapshot_at)
    weights = [{k: v.detach().to("cpu", copy=True).contiguous()
                for k, v in result.model.model_params(i).items()} for i in range(n)]
    return ChunkResult(weights=weights, history=result.history,
                       snapshots=[result.model_snapshots(i) for i in range(n)],
                       device=describe_device(device),
                       wall_s=round(time.perf_counter() - started, 3),
                       resumed_from=result.resumed_from)


def run_local(plan: GridPlan, dataset: pd.DataFrame, checkpoints: Path,
              on_progress: Callable[[int], None] | None = None
              ) -> Iterator[tuple[Chunk, ChunkResult]]:
    """The local backend: the chunks one after another in this process, each checkpointed to
    ``checkpoints/<job name>.pt`` so an interrupted stage resumes it. Yields each trained chunk;
    the caller writes it, then the next chunk starts (so its checkpoint can go)."""
    done = 0
    for job in plan.jobs:
        ckpt = checkpoints / f"{job.name}.pt"
        base = done
        progress = None if on_progress is None else (lambda ms, b=base: on_progress(b + ms))
        result = train_chunk(job, dataset, checkpoint=ckpt, on_progress=progress)
        if result.resumed_from:
            log.info("%s: resumed %d models from the checkpoint at step %d", ckpt,
                     len(job.specs), result.resumed_from)
        yield job, result
        ckpt.unlink(missing_ok=True)
        done += job.model_steps
    with contextlib.suppress(OSError):  # only if empty
        checkpoints.rmdir()


def local_backend(checkpoints: Path) -> Backend:
    """This process, chunk after chunk, with all of the device's memory."""
    return Backend(1.0, None, lambda plan, dataset, on_progress:
                   run_local(plan, dataset, checkpoints, on_progress))


def chunk_id(specs: list[RunSpec]) -> str:
    """A short hash naming the checkpoint of exactly these runs."""
    return hashlib.sha256(",".join(s.run_id for s in specs).encode()).hexdigest()[:12]


def group_data(group: Sequence[RunSpec], dataset: pd.DataFrame, p: int, train_frac: float,
               device: torch.device) -> SplitTensors:
    """The tokens of a shape group on the device, with one split per run where asked for."""
    s0 = group[0]
    if not s0.split_per_run:
        return SplitTensors.from_table(dataset, p, device, diff_vocab=s0.diff_vocab,
                                       eqn_sign=s0.eqn_sign)
    return SplitTensors.per_run(dataset, [train_mask(s, dataset, train_frac) for s in group], p,
                                device, diff_vocab=s0.diff_vocab, eqn_sign=s0.eqn_sign)
