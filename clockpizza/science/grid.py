"""The train stage's work: the whole grid planned at once, every run that is not already whole
trained in memory-sized chunks (in this process, or as Ray tasks: clockpizza.science.distributed)
and written to the run store by this process.

A run is identified by its run id, a hash of its settings, so a run whose directory is already
whole is reused whatever list it came from: adding an attention rate, a width or a seed trains
only the new runs. Reuse does not change results: a model's initial weights depend on its own
seed alone (``init_model``), and the models of a chunk share no arithmetic, so a run trained
alone has the bits it has trained among its group (on CPU; tests/test_grid.py checks it).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from clockpizza.io.params import Params, TrainConfig
from clockpizza.io.store import RunError, read_snapshots, write_run
from clockpizza.science import distributed
from clockpizza.science.architectures import model_config, param_shapes
from clockpizza.science.chunks import (
    Backend,
    Chunk,
    ChunkResult,
    GridPlan,
    Progress,
    chunk_id,
    local_backend,
)
from clockpizza.science.runs import read_spec_run, run_config
from clockpizza.science.spec import RunSpec, engine_note, grid_groups, group_specs, shape_groups
from clockpizza.science.train import plan_chunks, resolve_device

CHECKPOINTS = Path(".checkpoints")
log = logging.getLogger(__name__)


def run_dir(runs_root: str | Path, spec: RunSpec) -> Path:
    """Where a run lives: ``runs/<group>/<run_id>`` (the layout metrics reads)."""
    return Path(runs_root) / spec.group / spec.run_id


def is_whole(path: Path, spec: RunSpec, t: TrainConfig) -> bool:
    """Whether the run directory holds this run, complete and readable, with the history and
    snapshots the params ask for (``train.eval_every`` and ``train.snapshots`` are not part of
    the run id, so a run recorded with others is trained again)."""
    if not path.is_dir():
        return False
    cfg = model_config(spec)
    try:
        stored = read_spec_run(path, cfg, spec.run_id)
        if (stored.config.get("eval_every") != t.eval_every
                or stored.config.get("snapshots") != list(t.snapshot_steps)):
            log.info("%s: recorded with other train.eval_every or train.snapshots; "
                     "training it again", path)
            return False
        read_snapshots(path, param_shapes(cfg), list(t.snapshot_steps))
    except RunError as e:  # the message names the broken file
        log.warning("%s; training the run again", e)
        return False
    return True


def grid_specs(params: Params) -> list[RunSpec]:
    """Every run of the grid in params: the transformer groups, then the attention-free
    models (the order of ``grid_groups``, which the metrics stage reads)."""
    return [s for _, specs in grid_groups(params) for s in specs]


def split_reused(params: Params, runs_root: str | Path, specs: Sequence[RunSpec] | None = None,
                 *, reuse: bool = True) -> tuple[list[RunSpec], list[Path]]:
    """(the runs to train, the directories of the whole runs reused) of ``specs`` (default:
    the whole grid)."""
    specs = grid_specs(params) if specs is None else list(specs)
    todo, reused = [], []
    for spec in specs:
        path = run_dir(runs_root, spec)
        if reuse and is_whole(path, spec, params.train):
            reused.append(path)
        else:
            todo.append(spec)
    return todo, reused


def plan_grid(params: Params, dataset: pd.DataFrame, todo: Sequence[RunSpec],
              reused: Sequence[Path] = (), *, memory_share: float = 1.0,
              device: torch.device | None = None) -> GridPlan:
    """Split the runs ``todo`` into chunks.

    A shape group (one combination of the non-α axes) is cut into chunks that fit
    ``memory_share`` of half the free memory of ``device`` (default: ``train.device`` here);
    ``train.max_models`` caps them.
    """
    t = params.train
    device = resolve_device(t.device) if device is None else device
    n_train = _n_train(params, dataset)
    jobs = []
    for group in shape_groups(list(todo)):
        cfg = model_config(group[0])
        for chunk in plan_chunks(len(group), cfg, n_train, device, t.max_models, memory_share):
            part = tuple(group[i] for i in chunk)
            jobs.append(Chunk(
                specs=part, name=f"{part[0].group}-{chunk_id(list(part))}", p=params.data.p,
                train_frac=params.data.train_frac, eval_every=t.eval_every,
                snapshot_at=t.snapshot_steps, device=t.device,
                checkpoint_seconds=60 * t.checkpoint_minutes))
    return GridPlan(jobs, list(reused))


def _n_train(params: Params, dataset: pd.DataFrame) -> int:
    """Examples per forward pass: with one split per run every model sees all p² pairs."""
    if params.data.split_per_run:
        return len(dataset)
    return int(dataset["is_train"].sum())


def write_chunk(job: Chunk, result: ChunkResult, runs_root: str | Path) -> list[Path]:
    """Write every run of a trained chunk, each directory atomically (the driver's job)."""
    cfg = model_config(job.specs[0])
    timing = {"chunk": job.name.rsplit("-", 1)[-1], "n_models": len(job.specs),
              "wall_s": result.wall_s, "resumed_from": result.resumed_from}
    paths = []
    snapshots = sorted(result.snapshots[0]) if result.snapshots else []
    for i, spec in enumerate(job.specs):
        config = run_config(spec, cfg, width=spec.d_model, seed=spec.init_seed,
                            device=result.device, eval_every=job.eval_every) | {
            "timing": timing, "snapshots": snapshots}
        path = run_dir(runs_root, spec)
        write_run(path, result.weights[i], config, result.history[i], result.snapshots[i])
        paths.append(path)
    return paths


@dataclass
class GridOutcome:
    trained: list[Path]
    reused: list[Path]
    backend: str


@contextlib.contextmanager
def open_backend(t: TrainConfig, checkpoints: Path, needed: bool = True) -> Iterator[Backend]:
    """``train.backend``: Ray tasks (a cluster joined or started, only when there is work), or
    this process."""
    if t.backend == "ray" and needed:
        with distributed.ray_backend(t) as backend:
            yield backend
    else:
        yield local_backend(checkpoints)


def train_grid(params: Params, dataset: pd.DataFrame, runs_root: str | Path,
               specs: Sequence[RunSpec] | None = None, *,
               on_plan: Callable[[GridPlan], None] | None = None,
               on_progress: Progress | None = None,
               checkpoints: Path = CHECKPOINTS, reuse: bool = True) -> GridOutcome:
    """Train every run of ``specs`` (default: the grid) that is not already whole, on
    ``train.backend``, and write each run as its chunk comes back.

    ``on_plan(plan)`` is called once the work is known (before any training: a progress bar's
    total); ``on_progress(model_steps)`` counts over the whole grid, across workers.
    """
    todo, reused = split_reused(params, runs_root, specs, reuse=reuse)
    note = engine_note(params)
    if note and todo:
        log.warning("%s", note)
    with open_backend(params.train, checkpoints, needed=bool(todo)) as backend:
        plan = plan_grid(params, dataset, todo, reused, memory_share=backend.memory_share,
                         device=backend.plan_device)
        if on_plan is not None:
            on_plan(plan)
        trained = [path for job, result in backend.run(plan, dataset, on_progress)
                   for path in write_chunk(job, result, runs_root)]
    return GridOutcome(trained, plan.reused, params.train.backend)


def train_and_save(params: Params, width: int, seed: int, dataset: pd.DataFrame,
                   runs_root: str | Path,
                   on_progress: Callable[[int], None] | None = None,
                   checkpoints: Path = CHECKPOINTS) -> list[Path]:
    """Train the (width, seed) transformer group (every run not already whole); returns the
    directories of all its runs, in params order."""
    specs = group_specs(params, width, seed)
    train_grid(params, dataset, runs_root, specs, on_progress=on_progress,
               checkpoints=checkpoints)
    return [run_dir(runs_root, s) for s in specs]
