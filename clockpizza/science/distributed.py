"""The Ray backend (``train.backend: ray``): the grid's chunks as Ray tasks.

Each chunk of a shape group (a :class:`~clockpizza.science.grid.Chunk`) is one task, placed
by Ray on ``train.ray_cpus_per_task`` CPUs and ``train.ray_gpus_per_task`` GPUs (a fraction puts
several chunks of small widths on one GPU). A task trains its chunk with the same code as the
local backend and returns the weights, histories and snapshots through Ray's object store (no
shared filesystem is assumed); the driver writes each run, atomically, as its chunk comes back.
A worker that dies mid-task (killed, out of memory, a lost node) has its task retried up to
:data:`MAX_RETRIES` times from the start of the chunk; runs already written are never touched.
Tasks report their model-steps to a small actor without waiting; the driver polls it while it
waits for results, for one progress bar over the whole grid.

Ray is an optional dependency (``pip install -e '.[ray]'``); it is imported only here, and only
when the ray backend is chosen.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import torch

from clockpizza.io.params import TrainConfig
from clockpizza.science.chunks import Backend, Chunk, ChunkResult, GridPlan, train_chunk

# A task whose worker died is run again from its start this many times, then the stage fails
# (naming the chunk). Three is Ray's own default; a chunk that kills its worker four times
# (say, out of memory every time) needs a smaller train.max_models, not more retries.
MAX_RETRIES = 3
POLL_SECONDS = 0.5  # how often the driver refreshes the progress bar while it waits
INSTALL = "pip install -e '.[ray]'"


def require_ray() -> ModuleType:
    """Import Ray, or fail with one line naming the key and the install command."""
    try:
        import ray
    except ImportError:
        raise RuntimeError(f"train.backend = ray, but Ray is not installed: {INSTALL} (or "
                           "pip install 'ray[default]>=2.9'), or set train.backend: local"
                           ) from None
    return ray


@dataclass(frozen=True)
class Share:
    """What one task may plan for: its part of the device memory, on which device."""

    memory: float
    plan_device: torch.device


@contextlib.contextmanager
def cluster(t: TrainConfig, num_cpus: int | None = None) -> Iterator[Share]:
    """Connect to ``train.ray_address`` (or ``RAY_ADDRESS``), else start a local cluster on
    this machine (``num_cpus`` of its cores; default all); shut down what was started here."""
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        address = t.ray_address or os.environ.get("RAY_ADDRESS")
        quiet: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING",
                                 "configure_logging": True}
        if address:
            # A remote cluster has no copy of this checkout: ship the package's code with the
            # job (runtime environments need ray[default]).
            import clockpizza

            try:
                ray.init(address=address, logging_level="WARNING",
                         runtime_env={"py_modules": [str(Path(clockpizza.__file__).parent)]})
            except (ConnectionError, TimeoutError) as e:  # the check stage probed it earlier
                key = "train.ray_address" if t.ray_address else "RAY_ADDRESS (environment)"
                raise RuntimeError(f"{key} = {address!r}: could not connect ({e})") from None
        else:
            ray.init(num_cpus=num_cpus, **quiet)
        started = True
    try:
        resources = ray.cluster_resources()
        if t.ray_gpus_per_task:
            share = Share(min(1.0, float(t.ray_gpus_per_task)),
                          torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        else:
            cpus = max(1.0, float(resources.get("CPU", 1.0)))
            share = Share(min(1.0, t.ray_cpus_per_task / cpus), torch.device("cpu"))
        yield share
    finally:
        if started:
            ray.shutdown()


def _task_device(job: Chunk, gpus: float) -> torch.device:
    # Ray hides the GPUs a task did not ask for only when it asks for some; a CPU task must not
    # pick up a GPU of its node through train.device: auto.
    if not gpus:
        return torch.device("cpu")
    from clockpizza.science.train import resolve_device

    return resolve_device(job.device)


def _train_chunk_task(job: Chunk, dataset: pd.DataFrame, progress: Any, index: int,
                      cpus: int, gpus: float) -> ChunkResult:
    """The body of one Ray task: its torch threads are its CPU allotment."""
    torch.set_num_threads(cpus)

    def report(model_steps: int) -> None:
        progress.report.remote(index, model_steps)  # fire and forget: never waits

    return train_chunk(job, dataset, on_progress=report, device=_task_device(job, gpus))


class _Progress:
    """Model-steps done per task (a retried task starts again from 0)."""

    def __init__(self) -> None:
        self.done: dict[int, int] = {}

    def report(self, index: int, model_steps: int) -> None:
        self.done[index] = model_steps

    def total_of(self, indices: list[int]) -> int:
        return sum(self.done.get(i, 0) for i in indices)


def run_ray(plan: GridPlan, dataset: pd.DataFrame, t: TrainConfig,
            on_progress: Callable[[int], None] | None = None
            ) -> Iterator[tuple[Chunk, ChunkResult]]:
    """Submit every chunk of ``plan`` as a task; yield each (job, result) as it finishes."""
    ray = require_ray()
    if not plan.jobs:
        return
    progress = ray.remote(num_cpus=0)(_Progress).remote()
    task = ray.remote(_train_chunk_task).options(
        num_cpus=t.ray_cpus_per_task, num_gpus=t.ray_gpus_per_task, max_retries=MAX_RETRIES,
        retry_exceptions=False, name="train_chunk")
    data_ref = ray.put(dataset)
    pending = {task.remote(job, data_ref, progress, i, t.ray_cpus_per_task,
                           t.ray_gpus_per_task): i for i, job in enumerate(plan.jobs)}
    finished = 0  # model-steps of the chunks already back
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
        for ref in ready:
            i = pending.pop(ref)
            job = plan.jobs[i]
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as e:
                raise RuntimeError(f"chunk {job.name} ({len(job.specs)} runs) failed on Ray "
                                   f"after up to {MAX_RETRIES} retries: "
                                   f"{str(e).splitlines()[0]}") from e
            finished += job.model_steps
            yield job, result
        if on_progress is not None:
            in_flight = ray.get(progress.total_of.remote(sorted(pending.values())))
            on_progress(finished + in_flight)


@contextlib.contextmanager
def ray_backend(t: TrainConfig) -> Iterator[Backend]:
    """The chunks as Ray tasks on the cluster of :func:`cluster`, for as long as it is open."""
    with cluster(t) as share:
        yield Backend(share.memory, share.plan_device, lambda plan, dataset, on_progress:
                      run_ray(plan, dataset, t, on_progress))
