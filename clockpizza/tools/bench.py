"""Benchmark: our vectorised trainer against a plain loop of the paper's procedure.

    python -m clockpizza.tools.bench [--width 32 64 128] [--n-models N] [--steps 100]
                                     [--warmup 10] [--repeats 5] [--threads T] [--device auto]
                                     [--precision fp32] [--engine fast] [--json]

Each width prints one JSON line (see :func:`run_benchmark`): medians over the repetitions, their
ranges, and the load average before and after. The result is also written
as a row of ``report/benchmarks.md`` (one row per device × width × models × precision, replaced
when measured again). Speed goals are checked with this command, never with a timed test.

Model FLOPs (what ``achieved_tflops`` counts) are the multiply-adds of the exact computation a
training step needs, times 2, times 3 for forward + backward (backward ≈ 2 × forward), per
training example, per model (:func:`train_flops_per_model_step`). Attention-score and softmax
arithmetic, the loss and the optimizer are left out: they are O(n_ctx²·d) or O(params) per
example, under 2 % of the total at width ≥ 32.

What is timed is the steady state: the models' initialisation, the copy to the device and the
first ``--warmup`` steps stay outside the timer, which runs from the ``--warmup``-th step's
evaluation to the last one (CUDA events on a GPU, so no host sync enters the step loop). Each
precision is scored against the peak of a large matmul in that precision (fp32 with TF32 off,
TF32, bf16), measured in the same repetition.

*mfu* counts those model FLOPs whatever the engine. The fast step (``--engine fast``,
:mod:`clockpizza.science.fast`) performs fewer: it computes keys, values and queries once per
(position, token) instead of once per example. *hfu* counts the FLOPs the measured engine
performs (:func:`performed_flops_per_model_step`), so hfu ≤ 1 always and mfu can exceed it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from clockpizza.io.table import write_text
from clockpizza.science import reference
from clockpizza.science.data import make_dataset
from clockpizza.science.model import TransformerConfig, init_params
from clockpizza.science.spec import REFERENCE, RunSpec, fast_step_applies
from clockpizza.science.subnormals import denormals_flushed
from clockpizza.science.train import (
    SplitTensors,
    describe_device,
    model_config,
    precision_context,
    resolve_device,
    train_group,
)

REPORT = Path("report/benchmarks.md")
EVAL_EVERY = 100  # params.yaml's train.eval_every: the history is recorded at 0 and every 100


def forward_macs_per_example(cfg: TransformerConfig) -> int:
    """Multiply-adds of one forward pass of one example, computing what the loss needs.

    Blocks before the last: Q, K, V, O projections (4·d² per position) and the MLP (2·d·d_mlp per
    position) at all n_ctx positions. Last block: K and V at all positions, Q, O and the MLP at
    the last position only (the rest cannot reach the loss). Unembedding: d·d_vocab.
    """
    d, n, mlp = cfg.d_model, cfg.n_ctx, 2 * cfg.d_model * cfg.d_mlp
    full_block = n * (4 * d * d + mlp)
    last_block = n * 2 * d * d + 2 * d * d + mlp
    return (cfg.n_layers - 1) * full_block + last_block + d * cfg.d_vocab


def train_flops_per_model_step(cfg: TransformerConfig, n_train: int) -> int:
    """FLOPs of one full-batch training step of one model: 2 · 3 · MACs · examples."""
    return 6 * forward_macs_per_example(cfg) * n_train


def performed_flops_per_model_step(cfg: TransformerConfig, n_train: int, engine: str) -> int:
    """FLOPs the engine's step performs for one model (2 · 3 · MACs, as above).

    The reference performs the model FLOPs. The fast step, one block
    only, performs per example the attention output projection, the MLP and the unembedding, and
    once per step the token tables: keys and values of ``n_ctx · d_vocab`` rows, queries of
    ``d_vocab`` rows and the scores of every (last token, token) pair.
    """
    if engine != "fast":
        return train_flops_per_model_step(cfg, n_train)
    d, n, v = cfg.d_model, cfg.n_ctx, cfg.d_vocab
    per_example = d * d + 2 * d * cfg.d_mlp + d * v
    tables = n * v * 2 * d * d + v * d * d + v * n * v * d
    return 6 * (per_example * n_train + tables)


def peak_matmul_tflops(device: torch.device, seconds: float = 1.0,
                       precision: str = "fp32") -> float:
    """Measured matmul throughput on ``device`` in ``precision`` (the roofline mfu is stated
    against): float32 with TF32 off, float32 with TF32 on, or bfloat16 matrices."""
    n = 8192 if device.type == "cuda" else 2048
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    with precision_context(precision, device):
        for _ in range(2):
            a @ b
        _sync(device)
        reps, t0, start = 0, time.perf_counter(), _mark(device)
        while time.perf_counter() - t0 < seconds or reps < 3:
            a @ b
            reps += 1
            if device.type == "cuda" and reps % 10:
                continue
            _sync(device)
        elapsed = _elapsed(start, _mark(device))
    return 2 * n**3 * reps / elapsed / 1e12


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


Mark = float | torch.cuda.Event


def _mark(device: torch.device) -> Mark:
    """A point in time: a CUDA event recorded on the stream (no host sync), else the clock."""
    if device.type == "cuda":
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event
    return time.perf_counter()


def _elapsed(start: Mark, end: Mark) -> float:
    """Seconds between two marks (waits for a CUDA end event to complete)."""
    if isinstance(start, torch.cuda.Event) and isinstance(end, torch.cuda.Event):
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    assert isinstance(start, float) and isinstance(end, float)
    return end - start


def timed_group(specs: list[RunSpec], data: SplitTensors, device: torch.device,
                warmup: int) -> float:
    """Seconds of the steps after ``warmup`` of one trained group (``specs[0].steps`` in all).

    Set-up and the first ``warmup`` steps are outside the timer: it starts at the evaluation of
    step ``warmup`` (a snapshot there copies the weights to the host, so the device has caught
    up) and stops at the final evaluation, evaluated every :data:`EVAL_EVERY` steps as the
    pipeline's default evaluates.
    """
    steps = specs[0].steps
    marks: dict[int, Mark] = {}

    def progress(step: int) -> None:
        if step in (warmup, steps):
            marks[step] = _mark(device)

    train_group(specs, data, device, eval_every=EVAL_EVERY, snapshot_at=(warmup,),
                on_progress=progress)
    return _elapsed(marks[warmup], marks[steps])


def preset_flops(preset: dict[str, object], p: int = 59, train_frac: float = 0.8) -> float:
    """Model FLOPs of a whole preset grid of params.yaml (attn_rate × width × seed × n_layers)."""
    def as_list(x: object) -> list[object]:
        return list(x) if isinstance(x, list) else [x]

    n_train = round(train_frac * p * p)
    n_runs_per_shape = len(as_list(preset["attn_rate"])) * len(as_list(preset["seed"]))
    total = 0.0
    for width in as_list(preset["width"]):
        for n_layers in as_list(preset["n_layers"]):
            cfg = TransformerConfig(d_vocab=p, n_ctx=2, d_model=int(width), n_heads=4,  # type: ignore[call-overload]
                                    n_layers=int(n_layers))  # type: ignore[call-overload]
            total += train_flops_per_model_step(cfg, n_train) * n_runs_per_shape
    return total * int(preset["steps"])  # type: ignore[call-overload]


# ---------------------------------------------------------------------------------------------
# The reference: the paper's procedure, one model at a time, written plainly.


def reference_loop(cfg: TransformerConfig, spec: RunSpec, data: SplitTensors, steps: int,
                   device: torch.device) -> float:
    """Seconds for ``steps`` steps of one model trained the paper's way.

    Each step: full-batch forward and float64 loss, backward, AdamW, scheduler, then the test
    set evaluated and both losses read back to the host (``.item()``), as the paper logged them.
    """
    weights = {k: v.to(device) for k, v in init_params(cfg, spec.weights_seed).items()}
    _sync(device)
    t0 = time.perf_counter()
    reference.train_one(weights, spec, data, steps)
    _sync(device)
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------


def default_n_models(device: torch.device) -> int:
    """Enough models to keep the device busy: a handful per CPU core, many on a GPU."""
    return 128 if device.type == "cuda" else 8


@dataclass(frozen=True)
class Spread:
    """Median and range of one quantity over the repetitions."""

    median: float
    lo: float
    hi: float

    @classmethod
    def of(cls, xs: list[float]) -> Spread:
        return cls(statistics.median(xs), min(xs), max(xs))

    def cell(self, fmt: str, unit: str = "") -> str:
        return (f"{self.median:{fmt}}{unit} ({self.lo:{fmt}}–{self.hi:{fmt}})")


@dataclass(frozen=True)
class BenchResult:
    """Medians over ``repeats`` repetitions, each timing our trainer, the reference loop and the
    peak matmul back to back (so a change of load hits all three); ``*_range`` are (min, max).
    ``load_before``/``load_after`` are the 1-minute load averages around the whole measurement:
    on a machine with other work running the numbers are depressed and noisy."""

    device: str
    d_model: int
    n_models: int
    steps: int
    warmup: int  # of the steps, untimed
    precision: str
    engine: str
    threads: int
    repeats: int
    model_steps_per_s: float
    reference_model_steps_per_s: float
    speedup_vs_reference: float
    achieved_tflops: float
    peak_matmul_tflops: float
    mfu: float
    hfu: float
    model_steps_per_s_range: tuple[float, float]
    speedup_range: tuple[float, float]
    mfu_range: tuple[float, float]
    load_before: float
    load_after: float
    n_cpus: int
    flush_denormals: bool = False  # train.flush_denormals, for our trainer and the reference

    def as_dict(self) -> dict[str, object]:
        def r(v: object) -> object:
            if isinstance(v, float):
                return round(v, 4)
            return [r(x) for x in v] if isinstance(v, tuple) else v
        return {k: r(v) for k, v in vars(self).items()}


def load_average() -> float:
    """The 1-minute load average (NaN where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return math.nan


def run_benchmark(width: int = 128, n_models: int | None = None, steps: int = 100,
                  device: str = "auto", reference_steps: int | None = None,
                  precision: str = "fp32", repeats: int = 5,
                  peak_seconds: float = 1.0, engine: str = "fast", warmup: int = 10,
                  lr_warmup: int = 10, flush_denormals: bool = False) -> BenchResult:
    """Medians over ``repeats`` repetitions; ``steps - warmup`` steps of each are timed.

    ``lr_warmup`` is the learning-rate warm-up (``train.warmup_steps``, the paper's 10) of our
    trainer and the reference loop alike.
    """
    if not 0 <= warmup < steps:
        raise ValueError(f"warmup = {warmup}: must be in [0, steps = {steps})")
    dev = resolve_device(device)
    n_models = n_models or default_n_models(dev)
    reference_steps = reference_steps or max(5, steps // 5)
    if engine == "fast" and not fast_step_applies(1, precision):
        engine = REFERENCE  # what train.engine: fast trains such runs with
    p = 59
    data = SplitTensors.from_table(make_dataset(p, 0.8, 0), p, dev)
    specs = [RunSpec(attn_rate=i / max(n_models - 1, 1), d_model=width, n_layers=1, n_heads=4,
                     act="relu", p=p, train_frac=0.8, split_seed=0, init_seed=0, steps=steps,
                     lr=1e-3, weight_decay=2.0, beta1=0.9, beta2=0.98, eps=1e-8,
                     warmup_steps=lr_warmup, precision=precision, engine=engine,
                     flush_denormals=flush_denormals)
             for i in range(n_models)]
    cfg = model_config(specs[0])
    flops = train_flops_per_model_step(cfg, len(data.y_train))
    performed = performed_flops_per_model_step(cfg, len(data.y_train), engine)
    load_before = load_average()
    reference_loop(cfg, specs[-1], data, 2, dev)  # allocator, kernels, thread pools
    ours, ref, peak = [], [], []
    for _ in range(repeats):
        ours.append(n_models * (steps - warmup) / timed_group(specs, data, dev, warmup))
        with denormals_flushed(flush_denormals):
            ref_seconds = reference_loop(cfg, specs[-1], data, reference_steps, dev)
        ref.append(reference_steps / ref_seconds)
        peak.append(peak_matmul_tflops(dev, peak_seconds, precision))
    load_after = load_average()
    speedup = [o / r for o, r in zip(ours, ref, strict=True)]
    mfu = [o * flops / 1e12 / pk for o, pk in zip(ours, peak, strict=True)]
    o, s, m = Spread.of(ours), Spread.of(speedup), Spread.of(mfu)
    med_peak = statistics.median(peak)
    return BenchResult(device=describe_device(dev), d_model=width, n_models=n_models,
                       steps=steps, warmup=warmup, precision=precision, engine=engine,
                       threads=torch.get_num_threads(),
                       repeats=repeats, model_steps_per_s=o.median,
                       reference_model_steps_per_s=statistics.median(ref),
                       speedup_vs_reference=s.median, achieved_tflops=o.median * flops / 1e12,
                       peak_matmul_tflops=med_peak, mfu=m.median,
                       hfu=m.median * performed / flops,
                       model_steps_per_s_range=(o.lo, o.hi), speedup_range=(s.lo, s.hi),
                       mfu_range=(m.lo, m.hi), load_before=load_before, load_after=load_after,
                       n_cpus=os.cpu_count() or 0, flush_denormals=flush_denormals)


_HEADER = ("| device | d_model | models | steps | precision | engine | threads | reps | "
           "model-steps/s (min–max) | reference | speedup (min–max) | achieved TFLOP/s | peak "
           "matmul TFLOP/s | mfu (min–max) | hfu | load before → after (cpus) |")
_ACHIEVED = 11  # the column of achieved TFLOP/s, counted from 0


def preset_estimates(params_path: Path = Path("params.yaml")) -> list[tuple[str, float]]:
    """(preset name, model PFLOP) for every preset in params.yaml."""
    raw = yaml.safe_load(params_path.read_text())
    return [(name, preset_flops(preset) / 1e15) for name, preset in raw.get("presets", {}).items()]


_ESTIMATES = "What the paper-scale presets cost"


def update_report(result: BenchResult, path: Path = REPORT) -> None:
    """Insert or replace this result's row in the benchmark table (keyed by its setting).

    Sections other than the measurements and the preset estimates (e.g. the precision
    comparison of :mod:`clockpizza.tools.precision`) are kept as they are.
    """
    r = result
    engine = f"{r.engine}, subnormals flushed" if r.flush_denormals else r.engine
    key = (f"| {r.device} | {r.d_model} | {r.n_models} | {r.steps} | {r.precision} | "
           f"{engine} | {r.threads} |")
    o = Spread(r.model_steps_per_s, *r.model_steps_per_s_range)
    s = Spread(r.speedup_vs_reference, *r.speedup_range)
    m = Spread(r.mfu, *r.mfu_range)
    row = (f"{key} {r.repeats} | {o.cell('.1f')} | {r.reference_model_steps_per_s:.2f} | "
           f"{s.cell('.2f', '×')} | {r.achieved_tflops:.3f} | {r.peak_matmul_tflops:.3f} | "
           f"{m.cell('.2f')} | {r.hfu:.2f} | {r.load_before:.2f} → {r.load_after:.2f} "
           f"({r.n_cpus}) |")
    rows: list[str] = []
    kept: list[str] = []
    if path.exists():
        measured, *sections = path.read_text().split("\n## ")
        n_cols = _HEADER.count("|")
        rows = [ln for ln in measured.splitlines()
                if ln.startswith("| ") and not ln.startswith(("| device", "|---"))
                and ln.count("|") == n_cols]  # rows of an older layout are dropped
        kept = ["## " + sec.rstrip() for sec in sections if not sec.startswith(_ESTIMATES)]
    rows = sorted([ln for ln in rows if not ln.startswith(key)] + [row],
                  key=lambda ln: [int(t) if t.isdigit() else t
                                  for t in re.split(r"\s*\|\s*", ln)[1:8]])
    text = "\n".join([
        "# Training-speed benchmarks",
        "",
        "Written by `python -m clockpizza.tools.bench` (one row per device × width × models ×",
        "steps × precision × engine × threads; a new measurement replaces its row). Each row is",
        "the median",
        "of *reps* repetitions, the range in brackets; each repetition times our trainer, the",
        "reference and the peak matmul back to back. *reference* is the paper's procedure, one",
        "model at a time with a host read every step; *mfu* is achieved model FLOPs over a large",
        "matmul in the row's precision (fp32 with TF32 off, TF32, bf16) measured in the same",
        "repetition (counting in `clockpizza/tools/bench.py`). Timed: the steady state, model",
        "set-up and the first warm-up steps outside the timer (CUDA events on a GPU).",
        "*engine* is `train.engine`: the fast step performs fewer FLOPs than the model's (its",
        "keys, values and queries once per token, not per example), so its mfu can pass 1;",
        "*hfu* counts the FLOPs it performs.",
        "*load* is the 1-minute load average before and after, with the number of CPUs. It counts",
        "the benchmark's own threads (and decays over a minute), so a quiet machine reads about",
        "*threads* after; a load well above that means other work shared the machine and the",
        "row is depressed and noisy (compare rows measured at the same load only).",
        "",
        _HEADER,
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        *rows,
        "",
        f"## {_ESTIMATES}",
        "",
        "Model FLOPs of each preset in `params.yaml` (same counting), and the wall time they",
        "would take at the achieved rate of each measured device (its best row). Widths other than",
        "the measured one run at other rates, so these are estimates.",
        "",
        *_estimate_table(rows),
        "",
        *[sec + "\n" for sec in kept],
    ])
    write_text(path, text)


def _estimate_table(rows: list[str]) -> list[str]:
    best: dict[str, float] = {}
    for ln in rows:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        best[cells[0]] = max(best.get(cells[0], 0.0), float(cells[_ACHIEVED]))
    try:
        presets = preset_estimates()
    except (OSError, yaml.YAMLError):
        return ["(params.yaml not found: run from the repository root)"]
    head = "| preset | model PFLOP | " + " | ".join(f"at {d} ({t:.3g} TFLOP/s)"
                                                    for d, t in best.items()) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(best)]
    for name, pflop in presets:
        cells = [_hours(pflop * 1e3 / t) if t > 0 else "–" for t in best.values()]
        lines.append(f"| {name} | {pflop:.1f} | " + " | ".join(cells) + " |")
    return lines


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as written, and each option's default, where it has one, in its
    help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "%(default)" in text:
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m clockpizza.tools.bench", description=__doc__,
                                 formatter_class=_HelpFormatter)
    ap.add_argument("--width", type=int, nargs="+", default=[32, 64, 128],
                    help="d_model, one row each")
    ap.add_argument("--n-models", type=int, nargs="+", default=None,
                    help="models trained together: one number, or one per --width "
                         "(none: 8 on CPU, 128 on CUDA)")
    ap.add_argument("--steps", type=int, default=100,
                    help="steps of our trainer per repetition, the first --warmup untimed")
    ap.add_argument("--warmup", type=int, default=10,
                    help="untimed steps before the timer starts (set-up is never timed)")
    ap.add_argument("--lr-warmup", type=int, default=10, help="train.warmup_steps (the paper's)")
    ap.add_argument("--peak-seconds", type=float, default=1.0,
                    help="seconds of the peak matmul per repetition")
    ap.add_argument("--reference-steps", type=int, default=None,
                    help="timed steps of the reference loop (none: steps/5, at least 5)")
    ap.add_argument("--repeats", type=int, default=5,
                    help="repetitions; the median and range are reported")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads (none: torch's, one per core)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--precision", default="fp32", choices=("fp32", "tf32", "bf16"))
    ap.add_argument("--engine", default="fast", choices=("fast", "reference"),
                    help="the training step measured (train.engine)")
    ap.add_argument("--flush-denormals", action="store_true",
                    help="subnormal floats as zero (train.flush_denormals); with --warmup 1000 "
                         "the timed steps are late in training, where they matter")
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    ap.add_argument("--report", type=Path, default=REPORT, help="the table to update")
    ap.add_argument("--no-report", action="store_true", help="do not update the table")
    args = ap.parse_args(argv)
    for width in args.width:
        if width < 4 or width % 4:
            ap.error(f"--width {width}: must be a positive multiple of n_heads = 4")
    n_models = args.n_models or [None]
    if len(n_models) == 1:
        n_models = n_models * len(args.width)
    if len(n_models) != len(args.width):
        ap.error(f"--n-models: one number or one per --width ({len(args.width)})")
    if args.steps < 1 or args.repeats < 1 or any(n is not None and n < 1 for n in n_models):
        ap.error("--steps, --repeats and --n-models must be >= 1")
    if not 0 <= args.warmup < args.steps:
        ap.error(f"--warmup {args.warmup}: must be in [0, --steps = {args.steps})")
    if args.lr_warmup < 0 or args.peak_seconds <= 0:
        ap.error("--lr-warmup must be >= 0 and --peak-seconds > 0")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    for width, n in zip(args.width, n_models, strict=True):
        result = run_benchmark(width, n, args.steps, args.device,
                               args.reference_steps, args.precision, args.repeats,
                               peak_seconds=args.peak_seconds, engine=args.engine,
                               warmup=args.warmup, lr_warmup=args.lr_warmup,
                               flush_denormals=args.flush_denormals)
        if not args.no_report:
            update_report(result, args.report)
        if not args.json:
            for k, v in result.as_dict().items():
                print(f"{k:>28}: {v}")
        print(json.dumps(result.as_dict()), flush=True)


if __name__ == "__main__":
    main()
