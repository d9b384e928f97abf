"""Benchmark: our vectorised trainer against a plain loop of the paper's procedure.

    python -m clockpizza.tools.bench [--width 128] [--n-models N] [--steps 50] [--device auto]
                                     [--json]

The last line printed is one JSON object (see :func:`run_benchmark`). The result is also written
as a row of ``report/benchmarks.md`` (one row per device × width × models × precision, replaced
when measured again). Speed goals are checked with this command, never with a timed test.

Model FLOPs (what ``achieved_tflops`` counts) are the multiply-adds of the exact computation a
training step needs, times 2, times 3 for forward + backward (backward ≈ 2 × forward), per
training example, per model (:func:`train_flops_per_model_step`). Attention-score and softmax
arithmetic, the loss and the optimizer are left out: they are O(n_ctx²·d) or O(params) per
example, under 2 % of the total at width ≥ 32.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch import Tensor, nn

from clockpizza.io.params import RunSpec
from clockpizza.io.table import write_text
from clockpizza.science.data import make_dataset
from clockpizza.science.model import TransformerConfig, cross_entropy64
from clockpizza.science.train import (
    SplitTensors,
    describe_device,
    model_config,
    precision_context,
    resolve_device,
    train_group,
)

REPORT = Path("report/benchmarks.md")


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


def peak_matmul_tflops(device: torch.device, seconds: float = 1.0) -> float:
    """Measured fp32 matmul throughput on ``device`` (the roofline mfu is stated against)."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    with precision_context("fp32", device):
        for _ in range(2):
            a @ b
        _sync(device)
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or reps < 3:
            a @ b
            reps += 1
            if device.type == "cuda" and reps % 10:
                continue
            _sync(device)
        _sync(device)
        elapsed = time.perf_counter() - t0
    return 2 * n**3 * reps / elapsed / 1e12


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


class _PaperTransformer(nn.Module):
    """One model, every position through every block, as the paper's code computes it."""

    def __init__(self, cfg: TransformerConfig, attn_rate: float, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        d, h, e, m, v = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp, cfg.d_vocab

        def w(*shape: int, std: float) -> nn.Parameter:
            return nn.Parameter(torch.randn(*shape, generator=g) * std)

        self.cfg, self.rate = cfg, attn_rate
        self.W_E = w(v, d, std=d**-0.5)
        self.W_pos = w(cfg.n_ctx, d, std=d**-0.5)
        self.layers = nn.ModuleList()
        for _ in range(cfg.n_layers):
            layer = nn.Module()
            layer.W_Q, layer.W_K, layer.W_V = (w(h, e, d, std=d**-0.5) for _ in range(3))
            layer.W_O = w(d, h * e, std=d**-0.5)
            layer.W_in, layer.b_in = w(m, d, std=m**-0.5), nn.Parameter(torch.zeros(m))
            layer.W_out, layer.b_out = w(d, m, std=d**-0.5), nn.Parameter(torch.zeros(d))
            self.layers.append(layer)
        self.W_U = w(d, v, std=v**-0.5)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.W_E[tokens] + self.W_pos  # [B, n, d]
        for layer in self.layers:
            q = torch.einsum("ihd,bpd->biph", layer.W_Q, x)
            k = torch.einsum("ihd,bpd->biph", layer.W_K, x)
            v = torch.einsum("ihd,bpd->biph", layer.W_V, x)
            scores = torch.einsum("biph,biqh->biqp", k, q) / math.sqrt(self.cfg.d_head)
            pattern = self.rate * scores.softmax(dim=-1) + (1 - self.rate)
            z = torch.einsum("biph,biqp->biqh", v, pattern)
            x = x + torch.einsum("df,bqf->bqd", layer.W_O, z.transpose(1, 2).flatten(2))
            pre = torch.einsum("md,bpd->bpm", layer.W_in, x) + layer.b_in
            x = x + torch.einsum("dm,bpm->bpd", layer.W_out, pre.relu()) + layer.b_out
        return x[:, -1] @ self.W_U


def reference_loop(cfg: TransformerConfig, spec: RunSpec, data: SplitTensors, steps: int,
                   device: torch.device) -> float:
    """Seconds for ``steps`` steps of one model trained the paper's way.

    Each step: full-batch forward and float64 loss, backward, AdamW, scheduler, then the test
    set evaluated and both losses read back to the host (``.item()``), as the paper logged them.
    """
    model = _PaperTransformer(cfg, spec.attn_rate, spec.init_seed).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, betas=(spec.beta1, spec.beta2),
                            eps=spec.eps, weight_decay=spec.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: min(t / 10, 1))
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = cross_entropy64(model(data.x_train)[None], data.y_train)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            test = cross_entropy64(model(data.x_test)[None], data.y_test)[0]
        loss.item(), test.item()
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------


def default_n_models(device: torch.device) -> int:
    """Enough models to keep the device busy: a handful per CPU core, many on a GPU."""
    return 128 if device.type == "cuda" else 8


@dataclass(frozen=True)
class BenchResult:
    device: str
    d_model: int
    n_models: int
    steps: int
    precision: str
    model_steps_per_s: float
    reference_model_steps_per_s: float
    speedup_vs_reference: float
    achieved_tflops: float
    peak_matmul_tflops: float
    mfu: float

    def as_dict(self) -> dict[str, object]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in vars(self).items()}


def run_benchmark(width: int = 128, n_models: int | None = None, steps: int = 50,
                  device: str = "auto", reference_steps: int | None = None,
                  precision: str = "fp32") -> BenchResult:
    dev = resolve_device(device)
    n_models = n_models or default_n_models(dev)
    reference_steps = reference_steps or max(5, steps // 5)
    p = 59
    data = SplitTensors.from_table(make_dataset(p, 0.8, 0), p, dev)
    specs = [RunSpec(attn_rate=i / max(n_models - 1, 1), d_model=width, n_layers=1, n_heads=4,
                     act="relu", p=p, train_frac=0.8, split_seed=0, init_seed=0, steps=steps,
                     lr=1e-3, weight_decay=2.0, beta1=0.9, beta2=0.98, eps=1e-8,
                     warmup_steps=10, precision=precision) for i in range(n_models)]
    cfg = model_config(specs[0])
    warm = [RunSpec(**{**vars(s), "steps": 3}) for s in specs]
    train_group(warm, data, dev, eval_every=steps)  # allocator, kernels, thread pools
    _sync(dev)
    t0 = time.perf_counter()
    train_group(specs, data, dev, eval_every=max(steps // 10, 1))  # ends with a host read
    ours = n_models * steps / (time.perf_counter() - t0)

    reference_loop(cfg, specs[-1], data, 2, dev)  # warm-up
    ref = reference_steps / reference_loop(cfg, specs[-1], data, reference_steps, dev)

    flops = train_flops_per_model_step(cfg, len(data.y_train))
    achieved = ours * flops / 1e12
    peak = peak_matmul_tflops(dev)
    return BenchResult(device=describe_device(dev), d_model=width, n_models=n_models,
                       steps=steps, precision=precision, model_steps_per_s=ours,
                       reference_model_steps_per_s=ref, speedup_vs_reference=ours / ref,
                       achieved_tflops=achieved, peak_matmul_tflops=peak, mfu=achieved / peak)


_HEADER = ("| device | d_model | models | steps | precision | model-steps/s | reference | speedup "
           "| achieved TFLOP/s | peak fp32 matmul TFLOP/s | mfu |")


def preset_estimates(params_path: Path = Path("params.yaml")) -> list[tuple[str, float]]:
    """(preset name, model PFLOP) for every preset in params.yaml."""
    raw = yaml.safe_load(params_path.read_text())
    return [(name, preset_flops(preset) / 1e15) for name, preset in raw.get("presets", {}).items()]


def update_report(result: BenchResult, path: Path = REPORT) -> None:
    """Insert or replace this result's row in the benchmark table (keyed by its setting)."""
    r = result
    key = f"| {r.device} | {r.d_model} | {r.n_models} | {r.steps} | {r.precision} |"
    row = (f"{key} {r.model_steps_per_s:.1f} | {r.reference_model_steps_per_s:.2f} | "
           f"{r.speedup_vs_reference:.1f}× | {r.achieved_tflops:.3f} | "
           f"{r.peak_matmul_tflops:.3f} | {r.mfu:.2f} |")
    rows = []
    if path.exists():
        measured = path.read_text().split("\n## ")[0]  # the first table: the measurements
        rows = [ln for ln in measured.splitlines()
                if ln.startswith("| ") and not ln.startswith(("| device", "|---"))]
    rows = sorted([ln for ln in rows if not ln.startswith(key)] + [row],
                  key=lambda ln: [int(t) if t.isdigit() else t
                                  for t in re.split(r"\s*\|\s*", ln)[1:5]])
    text = "\n".join([
        "# Training-speed benchmarks",
        "",
        "Written by `python -m clockpizza.tools.bench` (one row per device × width × models ×",
        "steps × precision; a new measurement replaces its row). *reference* is the paper's",
        "procedure, one model at a time with a host read every step; *mfu* is achieved model",
        "FLOPs over a large fp32 matmul measured in the same run (counting in",
        "`clockpizza/tools/bench.py`).",
        "",
        _HEADER,
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "## What the paper-scale presets cost",
        "",
        "Model FLOPs of each preset in `params.yaml` (same counting), and the wall time they",
        "would take at the achieved rate of each measured device (its best row). Widths other than",
        "the measured one run at other rates, so these are estimates.",
        "",
        *_estimate_table(rows),
        "",
    ])
    write_text(path, text)


def _estimate_table(rows: list[str]) -> list[str]:
    best: dict[str, float] = {}
    for ln in rows:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        best[cells[0]] = max(best.get(cells[0], 0.0), float(cells[8]))
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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m clockpizza.tools.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=128, help="d_model (default 128)")
    ap.add_argument("--n-models", type=int, default=None,
                    help="models trained together (default: 8 on CPU, 128 on CUDA)")
    ap.add_argument("--steps", type=int, default=50, help="timed steps of our trainer")
    ap.add_argument("--reference-steps", type=int, default=None,
                    help="timed steps of the reference loop (default steps/5, at least 5)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--precision", default="fp32", choices=("fp32", "tf32", "bf16"))
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    ap.add_argument("--report", type=Path, default=REPORT, help=f"table to update ({REPORT})")
    ap.add_argument("--no-report", action="store_true", help="do not update the table")
    args = ap.parse_args(argv)
    if args.width < 4 or args.width % 4:
        ap.error(f"--width {args.width}: must be a positive multiple of n_heads = 4")
    if args.steps < 1 or (args.n_models is not None and args.n_models < 1):
        ap.error("--steps and --n-models must be >= 1")
    result = run_benchmark(args.width, args.n_models, args.steps, args.device,
                           args.reference_steps, args.precision)
    if not args.no_report:
        update_report(result, args.report)
    if not args.json:
        for k, v in result.as_dict().items():
            print(f"{k:>28}: {v}")
    print(json.dumps(result.as_dict()))


if __name__ == "__main__":
    main()
