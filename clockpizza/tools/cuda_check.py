"""Before anything trains on a device: one training step of the fast engine against the reference
step there, in float64 and float32, gradients and losses, each measured against the reference
step computed in float64 on the CPU.

    python3 -m clockpizza.tools.cuda_check [--device cuda] [--p 59] [--width 128] [--json FILE]

Four models (α 0, 0.3, 0.7, 1), each with its own initial weights and its own train/test split
(the paper's protocol, as the paper-scale presets train). Float64 on the device must give the
CPU's float64 gradients to ~1e-10 (any difference of mathematics shows at once); float32 (TF32
off) must agree to float32 rounding. A failure prints the worst parameter of each comparison
and exits 1, so scripts/gpu_check.sh stops before spending GPU time on a wrong engine.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from clockpizza.science.architectures import init_model, model_config
from clockpizza.science.data import make_dataset
from clockpizza.science.fast import FastStep
from clockpizza.science.model import BatchedTransformer, cross_entropy64
from clockpizza.science.spec import RunSpec
from clockpizza.science.train import SplitTensors, precision_context, resolve_device

RATES = (0.0, 0.3, 0.7, 1.0)
# Largest |error| over the largest |exact value| of a parameter's gradient (or of the losses).
# float64: summation order only (measured on a CPU ~1e-15). float32: a few ulps of the
# gradient's scale, grown with the length of the sums (the tests measure 1e-7..4e-7 at width 16).
LIMITS = {torch.float64: 1e-10, torch.float32: 2e-5}


@dataclass(frozen=True)
class Comparison:
    dtype: str  # float64 | float32
    engine: str  # reference | fast (on the checked device)
    worst: str  # the parameter (or "loss") with the largest relative error
    rel_err: float
    limit: float

    @property
    def ok(self) -> bool:
        return self.rel_err < self.limit


def _setup(p: int, width: int) -> tuple[BatchedTransformer, SplitTensors]:
    spec = RunSpec(attn_rate=0.0, d_model=width, n_layers=1, n_heads=4, act="relu", p=p,
                   train_frac=0.8, split_seed=0, init_seed=0, steps=1, lr=1e-3,
                   weight_decay=2.0, beta1=0.9, beta2=0.98, eps=1e-8, warmup_steps=10,
                   precision="fp32", init_per_run=True, split_per_run=True)
    model = init_model(model_config(spec), list(range(len(RATES))), list(RATES))
    assert isinstance(model, BatchedTransformer)
    table = make_dataset(p, 0.8, 0)
    gen = torch.Generator().manual_seed(1)
    masks = [torch.rand(p * p, generator=gen) < 0.8 for _ in RATES]
    return model, SplitTensors.per_run(table, masks, p, torch.device("cpu"))


def _to(data: SplitTensors, device: torch.device) -> SplitTensors:
    assert data.train_mask is not None
    return SplitTensors(data.x_train.to(device), data.y_train.to(device), data.x_test.to(device),
                        data.y_test.to(device), data.train_mask.to(device))


def step(model: BatchedTransformer, data: SplitTensors, engine: str) -> dict[str, Tensor]:
    """One step's gradients (by parameter name) and per-model losses (``"loss"``), on the CPU
    in float64."""
    mask = data.train_mask
    for param in model.parameters():
        param.grad = None
    if engine == "fast":
        assert mask is not None
        weight = mask.double() / mask.sum(dim=1, keepdim=True)
        logits = FastStep(model, data.x_train, data.y_train, weight)(keep_logits=True)
        assert logits is not None
        loss = cross_entropy64(logits, data.y_train, mask).detach()
    else:
        loss = cross_entropy64(model(data.x_train), data.y_train, mask)
        loss.sum().backward()
        loss = loss.detach()
    out = {k: v.grad.detach().double().cpu() for k, v in model.named_parameters()
           if v.grad is not None}
    out["loss"] = loss.double().cpu()
    return out


def _worst(got: dict[str, Tensor], exact: dict[str, Tensor]) -> tuple[str, float]:
    if got.keys() != exact.keys():
        return f"parameters differ: {sorted(got.keys() ^ exact.keys())}", float("inf")
    errs = {k: float((got[k] - v).abs().max() / v.abs().max().clamp_min(1e-300))
            for k, v in exact.items()}
    name = max(errs, key=lambda k: errs[k])
    return name, errs[name]


def check(device: torch.device, p: int = 59, width: int = 128) -> list[Comparison]:
    """Both engines on ``device`` in float64 and float32 against the CPU's float64 reference."""
    model, data = _setup(p, width)
    with precision_context("fp32", device):  # TF32 off: float32 means float32 here
        exact = step(model.double(), data, "reference")
        out = []
        for dtype in (torch.float64, torch.float32):
            on_device = model.to(device=device, dtype=dtype)
            moved = _to(data, device)
            for engine in ("reference", "fast"):
                worst, err = _worst(step(on_device, moved, engine), exact)
                out.append(Comparison(str(dtype).removeprefix("torch."), engine, worst, err,
                                      LIMITS[dtype]))
            model = on_device.to(device="cpu", dtype=torch.float64)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m clockpizza.tools.cuda_check",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--p", type=int, default=59, help="the modulus (default 59, the paper's)")
    ap.add_argument("--width", type=int, default=128, help="d_model (default 128, figure 1's)")
    ap.add_argument("--json", type=Path, default=None, help="also write the comparisons here")
    args = ap.parse_args(argv)
    if args.width < 4 or args.width % 4:
        ap.error(f"--width {args.width}: must be a positive multiple of n_heads = 4")
    device = resolve_device(args.device)
    rows = check(device, args.p, args.width)
    for r in rows:
        print(f"[cuda_check] {device.type} {r.dtype:>7} {r.engine:>9} vs cpu float64 "
              f"reference: worst {r.worst} rel err {r.rel_err:.2e} (limit {r.limit:.0e}) "
              f"{'ok' if r.ok else 'FAILED'}")
    if args.json is not None:
        args.json.write_text(json.dumps({"device": str(device),
                                         "rows": [asdict(r) | {"ok": r.ok} for r in rows]},
                                        indent=1) + "\n")
    bad = [r for r in rows if not r.ok]
    if bad:
        print(f"[cuda_check] FAILED: {len(bad)} of {len(rows)} comparisons on {device}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
