"""The vectorised trainer: one group of same-shape models, full batch, AdamW
(docs/specification.md, "Training").

All models of a group step together: one forward and one backward over a leading model
dimension, one foreach AdamW update. AdamW is elementwise, so stepping the stacked tensors is the
same as stepping each model alone. The training data stay on the device and the step loop never
reads a value back to the host; evaluation results are written into a device buffer and copied
once at the end.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import itertools
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from clockpizza.io.table import atomic_write
from clockpizza.science.architectures import (
    ArchConfig,
    BatchedModel,
    init_model,
    model_config,
    param_shapes,
)
from clockpizza.science.data import encode
from clockpizza.science.fast import FastStep, supports
from clockpizza.science.model import BatchedTransformer, TransformerConfig, cross_entropy64
from clockpizza.science.spec import RunSpec
from clockpizza.science.subnormals import denormals_flushed

HISTORY_COLUMNS = ("step", "train_loss", "test_loss", "train_acc", "test_acc")
# How a training step is computed (RunSpec.engine; :func:`make_step` builds it): "reference",
# autograd op by op; "fast", :mod:`clockpizza.science.fast`, the same mathematics by hand (equal
# to rounding, not bit for bit, so it is part of a run's id).
ENGINES = ("reference", "fast")


def resolve_device(requested: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device = cuda, but torch sees no CUDA device; "
                           "use train.device: auto or cpu")
    return torch.device(requested)


def describe_device(device: torch.device) -> str:
    """A human-readable device name recorded with every run (e.g. ``cuda:NVIDIA H100``)."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return "cpu"


@functools.cache
def tune_cpu_allocator() -> bool:
    """Keep freed memory in the process heap (glibc), so a step reuses last step's pages.

    A full-batch step allocates activations of several MB to ~50 MB ([M, B, d_mlp] floats) and
    frees them again. glibc serves blocks above its mmap threshold (at most 32 MB) with fresh
    mmaps and returns freed heap tops to the kernel, so every step page-faults and zeroes that
    memory anew (what it saves: report/benchmarks.md, "The CPU allocator").
    Allocation only, no arithmetic changes: results stay bit for bit the same. Process-wide and
    once; a no-op (False) where the C library is not glibc. CPU only: CUDA has its own cache.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    # Freed memory above 1 GiB at the heap top still goes back to the kernel.
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 1 << 30))


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """TF32 matrix units while training when asked for (a process-wide switch, restored after).

    bf16 is not switched on here: its autocast covers each forward and loss alone
    (:func:`forward_context`).
    """
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def forward_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager[
        object]:
    """bf16 autocast around one forward pass and its loss; nothing for fp32 and tf32.

    Never around the optimizer step: autocast keeps the bf16 copy of each weight it casts for a
    matmul until the outermost autocast region exits, so one region spanning the training loop
    reads every step's forward from the step-0 weights while AdamW updates the fp32 masters.
    """
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass(frozen=True)
class SplitTensors:
    """Token ids and labels of the train and test pairs, on one device.

    One split for every model (the default), or, with ``train_mask``, every model its own:
    then ``x_train``/``y_train`` hold all p² pairs, ``train_mask[m]`` marks model m's training
    pairs and ``x_test``/``y_test`` are the same p² pairs (each model's test pairs are the rest).
    """

    x_train: Tensor  # [N_train, n_ctx]  (per-run split: all p² pairs)
    y_train: Tensor  # [N_train]
    x_test: Tensor  # [N_test, n_ctx]  (per-run split: all p² pairs)
    y_test: Tensor  # [N_test]
    train_mask: Tensor | None = None  # [M, p²] bool: each model's own training pairs

    @classmethod
    def from_table(cls, dataset: pd.DataFrame, p: int, device: torch.device, *,
                   diff_vocab: bool = False, eqn_sign: bool = False) -> SplitTensors:
        """The pairs written as tokens with the run's encoding (the ablations of
        docs/specification.md)."""
        x, y = _tokens(dataset, p, diff_vocab, eqn_sign)
        tr = torch.as_tensor(dataset["is_train"].to_numpy(copy=True), dtype=torch.bool)
        return cls(x[tr].to(device), y[tr].to(device), x[~tr].to(device), y[~tr].to(device))

    @classmethod
    def per_run(cls, dataset: pd.DataFrame, masks: Sequence[Tensor], p: int,
                device: torch.device, *, diff_vocab: bool = False,
                eqn_sign: bool = False) -> SplitTensors:
        """All pairs of ``dataset`` with one training mask per model (``[p²]`` bool each)."""
        x, y = _tokens(dataset, p, diff_vocab, eqn_sign)
        x, y = x.to(device), y.to(device)
        return cls(x, y, x, y, torch.stack(list(masks)).to(device))

    @property
    def n_train(self) -> int:
        """Training pairs per model (the same for every model)."""
        if self.train_mask is None:
            return len(self.y_train)
        return int(self.train_mask[0].sum())

    def select(self, models: range) -> SplitTensors:
        """The data of a chunk of the models (the same tensors when the split is shared)."""
        if self.train_mask is None:
            return self
        return SplitTensors(self.x_train, self.y_train, self.x_test, self.y_test,
                            self.train_mask[models.start:models.stop])


def _tokens(dataset: pd.DataFrame, p: int, diff_vocab: bool,
            eqn_sign: bool) -> tuple[Tensor, Tensor]:
    a = torch.as_tensor(dataset["a"].to_numpy(copy=True), dtype=torch.long)
    b = torch.as_tensor(dataset["b"].to_numpy(copy=True), dtype=torch.long)
    y = torch.as_tensor(dataset["label"].to_numpy(copy=True), dtype=torch.long)
    return encode(a, b, p, diff_vocab=diff_vocab, eqn_sign=eqn_sign), y


@dataclass
class GroupResult:
    model: BatchedModel  # trained, on the training device
    history: list[pd.DataFrame]  # one per model, columns HISTORY_COLUMNS
    resumed_from: int = 0  # the step a checkpoint was resumed at (0: trained from scratch)
    # step -> the stacked weights after that many steps ({name: [M, ...]}, on the CPU)
    snapshots: dict[int, dict[str, Tensor]] = field(default_factory=dict)

    def model_snapshots(self, i: int) -> dict[int, dict[str, Tensor]]:
        """Model i's snapshots, by step, under the saved names."""
        return {step: {k: v[i].contiguous() for k, v in w.items()}
                for step, w in self.snapshots.items()}


def _check_group(specs: Sequence[RunSpec]) -> None:
    if not specs:
        raise ValueError("empty group: nothing to train")
    keys = {s.group_key for s in specs}
    if len(keys) != 1:
        raise ValueError("a group must share every setting but the attention rate")


def bytes_per_model(cfg: ArchConfig, n_examples: int) -> int:
    """A generous estimate of the device memory one model needs while training.

    Parameters, gradients and two AdamW moments (4 copies, fp32), plus the activations that
    autograd keeps for a full batch: per example and layer the residual stream, q/k/v, the
    attention output and the MLP hidden layer (pre and post activation), and the logits with
    their float64 log-softmax. Doubled for the transient buffers of the backward pass. For the
    attention-free models, a few hidden-width vectors per example instead of the layers.
    """
    n_params = sum(math.prod(s) for s in param_shapes(cfg).values())
    if isinstance(cfg, TransformerConfig):
        per_layer = cfg.n_ctx * cfg.d_model * 8 + cfg.d_mlp * 3 * cfg.n_ctx
        per_example = cfg.n_layers * per_layer + cfg.d_vocab * 6
    else:
        per_example = 8 * cfg.width + cfg.d_vocab * 6
    return 4 * (4 * n_params + 2 * n_examples * per_example)


def free_memory(device: torch.device) -> int:
    """Bytes free on the device now (CUDA: the driver's count; CPU: MemAvailable)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def plan_chunks(n_models: int, cfg: ArchConfig, n_examples: int, device: torch.device,
                max_models: int = 0, memory_share: float = 1.0) -> list[range]:
    """Split a group into chunks that fit in half the free device memory.

    ``max_models`` > 0 caps the chunk size by hand. Chunks are near-equal in size.
    ``memory_share``: the part of that memory one chunk may use when several train at once on
    the device (the Ray backend: its share of the CPUs or of the GPU).
    """
    budget = int(free_memory(device) * memory_share) // 2
    fit = max(1, budget // bytes_per_model(cfg, n_examples))
    size = min(n_models, fit, max_models or n_models)
    n_chunks = math.ceil(n_models / size)
    bounds = [round(i * n_models / n_chunks) for i in range(n_chunks + 1)]
    return [range(lo, hi) for lo, hi in itertools.pairwise(bounds)]


def eval_steps(steps: int, eval_every: int, snapshots: Sequence[int] = ()) -> list[int]:
    """Steps at which the history is recorded: 0, every eval_every, the final step, and every
    snapshot step (so each snapshot has its losses and accuracies in the history)."""
    return sorted(set(range(0, steps, eval_every)) | {steps}
                  | {s for s in snapshots if 0 <= s <= steps})


class Step:
    """One training step of a batch of models, and the optimizer it is meant for.

    ``step(keep_logits)`` writes every parameter's ``.grad`` for the mean loss on each model's
    training pairs; with ``keep_logits`` it also returns the training logits and the float64
    loss ``[M]`` (the history's record, detached). The loop (:func:`train_group`) knows no
    more than this.
    """

    def __init__(self, model: BatchedModel, data: SplitTensors, precision: str,
                 device: torch.device) -> None:
        self.model, self.data, self.device = model, data, device
        self.precision = precision

    # The reference keeps the multi-tensor AdamW (one update per tensor list), so its runs stay
    # bit for bit what they always were; fused on CUDA, where its step counter stays on the
    # device (no host read per step).
    fused_on_cpu = False

    def optimizer(self, s0: RunSpec) -> torch.optim.AdamW:
        """AdamW over the stacked weights: elementwise, so exactly per-model AdamW."""
        fused = self.device.type == "cuda" or self.fused_on_cpu
        return torch.optim.AdamW(
            self.model.parameters(), lr=s0.lr, betas=(s0.beta1, s0.beta2), eps=s0.eps,
            weight_decay=s0.weight_decay, foreach=not fused, fused=fused)

    def __call__(self, keep_logits: bool) -> tuple[Tensor, Tensor] | None:
        raise NotImplementedError


class ReferenceStep(Step):
    """Autograd, op by op, through :class:`~clockpizza.science.model.BatchedTransformer`."""

    def __call__(self, keep_logits: bool) -> tuple[Tensor, Tensor] | None:
        d = self.data
        with forward_context(self.precision, self.device):
            logits = self.model(d.x_train)  # [M, N_train, V]
            loss = cross_entropy64(logits, d.y_train, d.train_mask)  # [M]
        loss.sum().backward()  # models share no parameters: each its own gradient
        return (logits.detach(), loss.detach()) if keep_logits else None


class FastStepper(Step):
    """The hand-written forward and backward of :mod:`clockpizza.science.fast`."""

    # One fused kernel per tensor instead of ~10 small ones, equal to the multi-tensor update to
    # rounding (the fast step is not bit for bit the reference anyway).
    fused_on_cpu = True

    def __init__(self, model: BatchedModel, data: SplitTensors, precision: str,
                 device: torch.device) -> None:
        super().__init__(model, data, precision, device)
        if not isinstance(model, BatchedTransformer) or not supports(model, precision):
            raise ValueError("engine fast: no fast step for these runs (one-layer fp32/tf32 "
                             "transformers only)")
        mask = data.train_mask
        weight = None if mask is None else mask.double() / mask.sum(dim=1, keepdim=True)
        self.fast = FastStep(model, data.x_train, data.y_train, weight)

    def __call__(self, keep_logits: bool) -> tuple[Tensor, Tensor] | None:
        logits = self.fast(keep_logits=keep_logits)
        if logits is None:
            return None
        # the history's loss: the reference's float64 one
        return logits, cross_entropy64(logits, self.data.y_train, self.data.train_mask)


def make_step(engine: str, model: BatchedModel, data: SplitTensors, precision: str,
              device: torch.device) -> Step:
    """The one place an engine name becomes a training step."""
    steps: dict[str, type[Step]] = {"reference": ReferenceStep, "fast": FastStepper}
    if engine not in steps:
        raise ValueError(f"engine {engine!r}: must be one of {ENGINES}")
    return steps[engine](model, data, precision, device)


def train_group(
    specs: Sequence[RunSpec],
    data: SplitTensors,
    device: torch.device,
    *,
    eval_every: int,
    on_progress: Callable[[int], None] | None = None,
    checkpoint: Path | None = None,
    checkpoint_seconds: float = 300.0,
    snapshot_at: Sequence[int] = (),
    engine: str | None = None,
) -> GroupResult:
    """Train the runs of one group together; returns the trained batch and per-run history.

    ``on_progress(step)`` is called at each evaluation (for a progress bar). With
    ``checkpoint``, the full training state (weights, AdamW moments, scheduler, history so far)
    is written there at the first evaluation step after every ``checkpoint_seconds``, and a
    matching checkpoint found at the start is resumed from: the result is the same as an
    uninterrupted run (bit for bit on CPU). The caller deletes the checkpoint once the runs are
    safely written. ``snapshot_at``: steps at which the weights (after that many updates) are
    copied to the CPU into ``GroupResult.snapshots``; the only host transfers in the loop.
    ``engine`` is one of :data:`ENGINES` (:func:`make_step`); ``None``: the runs' own
    (``RunSpec.engine``).
    """
    _check_group(specs)
    s0 = specs[0]
    if device.type == "cpu":
        tune_cpu_allocator()
    model = init_model(
        model_config(s0), [s.weights_seed for s in specs], [s.attn_rate for s in specs]
    ).to(device)
    mask = data.train_mask
    if mask is not None and mask.shape[0] != len(specs):
        raise ValueError(f"{mask.shape[0]} training masks for {len(specs)} models")
    step_fn = make_step(engine or s0.engine, model, data, s0.precision, device)
    opt = step_fn.optimizer(s0)
    # Paper choice: linear warm-up, lr × min(step / warmup, 1) with step counted from 0, so the
    # very first update has learning rate 0 (it only seeds Adam's moments).
    warm = s0.warmup_steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: min(t / warm, 1.0) if warm else 1.0)

    record_at = eval_steps(s0.steps, eval_every, snapshot_at)
    keep = {s for s in snapshot_at if 0 <= s <= s0.steps}
    snapshots: dict[int, dict[str, Tensor]] = {}
    history = torch.zeros(len(record_at), 4, model.n_models, dtype=torch.float64, device=device)
    run_ids = [s.run_id for s in specs]
    test_mask = None if mask is None else ~mask
    start, row = 0, 0
    if checkpoint is not None and checkpoint.exists():
        start, row = _resume(checkpoint, run_ids, model, opt, sched, history, device, snapshots)

    def record(row: int, train_logits: Tensor, train_loss: Tensor) -> None:
        # Written into a device buffer: no host sync inside the loop.
        with torch.no_grad():
            # per-run split: x_test is x_train (all pairs), so the logits are already there
            with forward_context(s0.precision, device):
                test_logits = model(data.x_test) if mask is None else train_logits
            history[row, 0] = train_loss
            history[row, 1] = cross_entropy64(test_logits, data.y_test, test_mask)
            history[row, 2] = _accuracy(train_logits, data.y_train, mask)
            history[row, 3] = _accuracy(test_logits, data.y_test, test_mask)
        if record_at[row] in keep:
            snapshots[record_at[row]] = {k: v.detach().to("cpu", copy=True)
                                         for k, v in model.named_parameters()}
        if on_progress is not None:
            on_progress(record_at[row])

    last_save = time.monotonic()
    with precision_context(s0.precision, device), denormals_flushed(s0.flush_denormals):
        for step in range(start, s0.steps):
            due = checkpoint is not None and time.monotonic() - last_save >= checkpoint_seconds
            if due and step == record_at[row] and step > start:
                _save_checkpoint(checkpoint, run_ids, step, row, model, opt, sched, history,
                                 snapshots)
                last_save = time.monotonic()
            opt.zero_grad(set_to_none=True)
            recorded = step_fn(keep_logits=step == record_at[row])  # writes every .grad
            if recorded is not None:
                record(row, *recorded)
                row += 1
            opt.step()
            sched.step()
        with torch.no_grad(), forward_context(s0.precision, device):
            logits = model(data.x_train)
            loss = cross_entropy64(logits, data.y_train, mask)
        record(row, logits, loss)
    if checkpoint is not None:
        # The finished state, so a group split into chunks resumes a finished chunk at once.
        _save_checkpoint(checkpoint, run_ids, s0.steps, row, model, opt, sched, history,
                         snapshots)
    hist = history.cpu().numpy()  # the one host read of the whole run
    frames = [
        pd.DataFrame({"step": record_at, "train_loss": hist[:, 0, i], "test_loss": hist[:, 1, i],
                      "train_acc": hist[:, 2, i], "test_acc": hist[:, 3, i]})
        for i in range(model.n_models)
    ]
    return GroupResult(model=model, history=frames, resumed_from=start, snapshots=snapshots)


def _save_checkpoint(path: Path, run_ids: list[str], step: int, row: int,
                     model: BatchedModel, opt: torch.optim.Optimizer,
                     sched: torch.optim.lr_scheduler.LRScheduler, history: Tensor,
                     snapshots: dict[int, dict[str, Tensor]]) -> None:
    state = {"run_ids": run_ids, "step": step, "row": row, "model": model.state_dict(),
             "opt": opt.state_dict(), "sched": sched.state_dict(), "history": history,
             "snapshots": {str(k): v for k, v in snapshots.items()}}
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _resume(path: Path, run_ids: list[str], model: BatchedModel,
            opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
            history: Tensor, device: torch.device,
            snapshots: dict[int, dict[str, Tensor]]) -> tuple[int, int]:
    """Load a checkpoint into the fresh training state; returns (step, history row).

    A checkpoint of other runs, or one that cannot be read, is ignored (training restarts).
    """
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        if state["run_ids"] != run_ids or state["history"].shape != history.shape:
            return 0, 0
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        history.copy_(state["history"])
        snapshots.update({int(k): {n: t.cpu() for n, t in v.items()}
                          for k, v in state.get("snapshots", {}).items()})
    except Exception as e:  # a torn or foreign file must never stop training
        warnings.warn(f"{path}: unusable checkpoint ignored ({e})", stacklevel=2)
        return 0, 0
    return int(state["step"]), int(state["row"])


def _accuracy(logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    hit = (logits.argmax(dim=-1) == labels).double()  # [M, B]
    if mask is None:
        return hit.mean(dim=-1)
    return (hit * mask).sum(dim=-1) / mask.sum(dim=-1)  # [M]
