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
import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from clockpizza.io.params import (
    Params,
    RunSpec,
    TrainConfig,
    engine_note,
    group_specs,
    instance_specs,
    mlp_spec,
    shape_groups,
)
from clockpizza.io.store import RunError, read_snapshots, write_run
from clockpizza.science.architectures import model_config, param_shapes
from clockpizza.science.runs import read_spec_run, run_config, train_mask
from clockpizza.science.train import (
    SplitTensors,
    describe_device,
    plan_chunks,
    resolve_device,
    train_group,
)

CHECKPOINTS = Path(".checkpoints")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChunkJob:
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

    jobs: list[ChunkJob]
    reused: list[Path] = field(default_factory=list)

    @property
    def model_steps(self) -> int:
        return sum(j.model_steps for j in self.jobs)

    @property
    def n_runs(self) -> int:
        return sum(len(j.specs) for j in self.jobs)


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
            return False
        read_snapshots(path, param_shapes(cfg), list(t.snapshot_steps))
    except RunError:
        return False
    return True


def grid_specs(params: Params) -> list[RunSpec]:
    """Every run of the grid in params: the transformer groups, then the attention-free
    models (the order of ``instance_specs``, which the metrics stage reads)."""
    return [s for _, specs in instance_specs(params) for s in specs]


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
    """Split the runs ``todo`` into chunk jobs.

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
            jobs.append(ChunkJob(
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


def train_chunk(job: ChunkJob, dataset: pd.DataFrame, *, checkpoint: Path | None = None,
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


def write_chunk(job: ChunkJob, result: ChunkResult, runs_root: str | Path) -> list[Path]:
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


def run_local(plan: GridPlan, dataset: pd.DataFrame, checkpoints: Path,
              on_progress: Callable[[int], None] | None = None
              ) -> Iterator[tuple[ChunkJob, ChunkResult]]:
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


@dataclass
class GridOutcome:
    trained: list[Path]
    reused: list[Path]
    backend: str


def train_grid(params: Params, dataset: pd.DataFrame, runs_root: str | Path,
               specs: Sequence[RunSpec] | None = None, *,
               on_plan: Callable[[GridPlan], None] | None = None,
               on_progress: Callable[[int], None] | None = None,
               checkpoints: Path = CHECKPOINTS, reuse: bool = True) -> GridOutcome:
    """Train every run of ``specs`` (default: the grid) that is not already whole, on
    ``train.backend``, and write each run as its chunk comes back.

    ``on_plan(plan)`` is called once the work is known (before any training: a progress bar's
    total); ``on_progress(model_steps)`` counts over the whole grid, across workers.
    """
    t = params.train
    todo, reused = split_reused(params, runs_root, specs, reuse=reuse)
    note = engine_note(params)
    if note and todo:
        log.warning("%s", note)
    if t.backend == "ray" and todo:  # nothing to train: no cluster started
        from clockpizza.science import distributed

        with distributed.cluster(t) as share:
            plan = plan_grid(params, dataset, todo, reused, memory_share=share.memory,
                             device=share.plan_device)
            if on_plan is not None:
                on_plan(plan)
            trained = [p for job, result in distributed.run_ray(plan, dataset, t, on_progress)
                       for p in write_chunk(job, result, runs_root)]
    else:
        plan = plan_grid(params, dataset, todo, reused)
        if on_plan is not None:
            on_plan(plan)
        trained = [p for job, result in run_local(plan, dataset, checkpoints, on_progress)
                   for p in write_chunk(job, result, runs_root)]
    return GridOutcome(trained, plan.reused, t.backend)


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


def train_mlp_and_save(params: Params, model: str, seed: int, dataset: pd.DataFrame,
                       runs_root: str | Path,
                       on_progress: Callable[[int], None] | None = None,
                       checkpoints: Path = CHECKPOINTS) -> list[Path]:
    """Train attention-free model ``model`` (A..X) from init seed ``seed`` and write the run."""
    spec = mlp_spec(params, model, seed)
    train_grid(params, dataset, runs_root, [spec], on_progress=on_progress,
               checkpoints=checkpoints)
    return [run_dir(runs_root, spec)]


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
