"""Benchmark: the Ray backend's model-steps/s with N single-threaded CPU workers against one.

    python -m clockpizza.tools.scaling [--workers 1 2] [--width 32] [--chunks 8]
                                       [--models 4] [--steps 300]

A grid of ``--chunks`` shape groups (one seed each, ``--models`` attention rates) trains on a
local Ray cluster of N CPUs, one single-threaded task per chunk. Workers are started and have
imported torch before the clock starts (a warm-up of one-step chunks), so the time is training
and the round trip of the results, not process start-up. Prints one JSON line per N and the
speed-up against N = 1, with the load average before and after (a loaded machine says so).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import yaml

from clockpizza.io.params import Params, parse_params
from clockpizza.science import distributed
from clockpizza.science.data import make_dataset
from clockpizza.science.grid import plan_grid
from clockpizza.science.spec import group_specs


def _params(width: int, models: int, chunks: int, steps: int) -> Params:
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw |= {"attn_rate": [round(i / max(1, models - 1), 4) for i in range(models)],
            "width": [width], "seed": list(range(chunks))}
    raw["train"] |= {"steps": steps, "eval_every": steps, "device": "cpu", "snapshots": "none",
                     "backend": "ray", "ray_cpus_per_task": 1, "ray_gpus_per_task": 0,
                     "max_models": models}
    return parse_params(raw)


def measure(n_workers: int, width: int, chunks: int, models: int, steps: int) -> dict:
    params = _params(width, models, chunks, steps)
    warm = _params(width, models, n_workers, 1)
    dataset = make_dataset(params.data.p, params.data.train_frac, params.data.split_seed)
    specs = [s for seed in params.seed for s in group_specs(params, width, seed)]
    load_before = os.getloadavg()[0]
    with distributed.cluster(params.train, num_cpus=n_workers):
        warm_specs = [s for seed in warm.seed for s in group_specs(warm, width, seed)]
        for _ in distributed.run_ray(plan_grid(warm, dataset, warm_specs), dataset, warm.train):
            pass
        plan = plan_grid(params, dataset, specs)
        started = time.perf_counter()
        for _ in distributed.run_ray(plan, dataset, params.train):
            pass
        wall = time.perf_counter() - started
    return {"workers": n_workers, "width": width, "chunks": len(plan.jobs), "models": models,
            "steps": steps, "model_steps": plan.model_steps, "wall_s": round(wall, 2),
            "model_steps_per_s": round(plan.model_steps / wall, 1),
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
            "cpus": os.cpu_count()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--models", type=int, default=4)
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    base = None
    for n in args.workers:
        row = measure(n, args.width, args.chunks, args.models, args.steps)
        if base is None:  # one worker's rate, from the first N measured
            base = row["model_steps_per_s"] / n
        row["speedup_vs_one"] = round(row["model_steps_per_s"] / base, 2)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
