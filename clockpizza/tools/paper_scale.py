"""A paper-scale grid end to end without DVC: train, measure, summarise and draw into one folder.

For machines that have a GPU but no DVC (and no network to install it): the stages' own code,
called in the order of ``dvc.yaml``, on a preset of ``params.yaml`` with optional overrides::

    python -m clockpizza.tools.paper_scale --preset fig1 --out results/fig1
    python -m clockpizza.tools.paper_scale --preset fig1 --out /tmp/dry --dry-run   # CPU, seconds

It writes into ``--out``: ``params.yaml`` (exactly what ran), ``dataset.parquet``, ``runs/``
(unless ``--no-weights``), ``runs.parquet``, ``circles.parquet``, ``summary.json``,
``timing.json``, ``meta.json`` (device, precision, wall time of each step) and
``figures/*.png``. ``--dry-run`` shrinks the preset (two widths of 8 and 16, the ends and the
middle of its α grid, one seed, 30 steps) to check the whole path on a CPU before spending
device time.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from clockpizza.analysis.collect import collect_tables, collect_timing
from clockpizza.figures.plots import save
from clockpizza.figures.report import draw_figures
from clockpizza.io.params import PRESET_TARGETS, Params, ParamsError, load_params
from clockpizza.io.table import (
    CIRCLES_SCHEMA,
    DYNAMICS_SCHEMA,
    write_json,
    write_parquet,
    write_runs_table,
    write_table,
)
from clockpizza.results.phases import summarize
from clockpizza.science.data import make_dataset
from clockpizza.science.grid import train_and_save
from clockpizza.science.train import describe_device, resolve_device

# Where each preset key goes in params.yaml (dotted), e.g. steps -> train.steps.
_TARGETS = PRESET_TARGETS


def _set(raw: dict[str, Any], dotted: str, value: object) -> None:
    node = raw
    *parents, last = dotted.split(".")
    for key in parents:
        if not isinstance(node.get(key), dict):
            raise ParamsError(f"--set {dotted}: {key!r} is not a section of params.yaml")
        node = node[key]
    if last not in node:
        raise ParamsError(f"--set {dotted}: no such key in params.yaml")
    node[last] = value


def preset_params(raw: dict[str, Any], preset: str, overrides: list[str],
                  dry_run: bool) -> dict[str, Any]:
    """params.yaml's mapping with ``presets.<preset>`` copied into the grid keys, then
    ``key=value`` overrides (YAML values) applied; ``dry_run`` shrinks the grid."""
    presets = raw.get("presets") or {}
    if preset not in presets:
        raise ParamsError(f"--preset {preset!r}: allowed: {sorted(presets)}")
    out = json.loads(json.dumps(raw))  # a deep copy of plain YAML data
    for key, value in presets[preset].items():
        _set(out, _TARGETS[key], value)
    if dry_run:
        rates = list(out["attn_rate"]) if isinstance(out["attn_rate"], list) else [out["attn_rate"]]
        out["attn_rate"] = sorted({rates[0], rates[len(rates) // 2], rates[-1]})
        out["width"], out["seed"] = [8, 16], [out["seed"][0]]
        out["train"]["steps"], out["train"]["eval_every"] = 30, 10
        out["boundary"]["n_boot"] = 10
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ParamsError(f"--set {item!r}: expected key=value, e.g. train.precision=tf32")
        _set(out, key, yaml.safe_load(value))
    return out


def run(params: Params, out: Path, *, keep_weights: bool = True,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train every (width, seed) group of ``params``, then measure and draw; returns meta."""
    device = resolve_device(params.train.device)
    walls: dict[str, float] = {}
    t0 = time.perf_counter()
    d = params.data
    dataset = make_dataset(d.p, d.train_frac, d.split_seed)
    write_parquet(out / "dataset.parquet", dataset)
    runs_root = out / "runs"
    groups = [(w, s) for w in params.width for s in params.seed]
    n_models = len(params.attn_rate) * len(groups)
    with tqdm(total=n_models * params.train.steps, unit="model-step", unit_scale=True,
              desc=f"train {n_models} models on {describe_device(device)}") as bar:
        for w, s in groups:
            base = bar.n

            def progress(model_steps: int, base: int = base) -> None:
                bar.update(base + model_steps - bar.n)

            train_and_save(params, w, s, dataset, runs_root, progress,
                           checkpoints=out / ".checkpoints")
    walls["train_s"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    tables = collect_tables(params, runs_root, dataset, device)
    write_runs_table(out / "runs.parquet", tables.runs)
    write_table(out / "circles.parquet", tables.circles, CIRCLES_SCHEMA)
    write_table(out / "dynamics.parquet", tables.dynamics, DYNAMICS_SCHEMA)
    fit = {"n_boot": params.boundary.n_boot, "boot_seed": params.boundary.boot_seed}
    write_json(out / "summary.json",
               summarize(tables.runs, boundary_width=params.render.fig1_width, **fit))
    write_json(out / "timing.json", collect_timing(params, runs_root))
    walls["metrics_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    for stem, fig in draw_figures(tables.runs, fig1_width=params.render.fig1_width,
                                  **fit).items():
        save(fig, out / "figures" / stem)
    walls["render_s"] = time.perf_counter() - t2
    if not keep_weights:
        shutil.rmtree(runs_root)
    meta = {"device": describe_device(device), "precision": params.train.precision,
            "n_models": n_models, "steps": params.train.steps,
            "wall_s": {k: round(v, 2) for k, v in walls.items()},
            "torch": torch.__version__, "python": platform.python_version()}
    write_json(out / "meta.json", meta)
    log(f"[paper_scale] {n_models} models, {walls['train_s']:.0f} s training on "
        f"{meta['device']} -> {out}")
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", required=True, help="a key of presets in params.yaml")
    ap.add_argument("--out", required=True, type=Path, help="output folder (created)")
    ap.add_argument("--params", default="params.yaml", type=Path)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a params key after the preset, e.g. train.precision=tf32")
    ap.add_argument("--dry-run", action="store_true", help="a tiny version of the preset")
    ap.add_argument("--no-weights", action="store_true", help="delete runs/ at the end")
    args = ap.parse_args(argv)
    try:
        raw = yaml.safe_load(args.params.read_text())
        chosen = preset_params(raw, args.preset, args.set, args.dry_run)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "params.yaml").write_text(yaml.safe_dump(chosen, sort_keys=False))
        params = load_params(args.out / "params.yaml")
    except (OSError, ParamsError) as e:
        print(f"[paper_scale] error: {e}", file=sys.stderr)
        return 2
    run(params, args.out, keep_weights=not args.no_weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
