"""A paper-scale grid without DVC: train it width by width, and after each width write its
tables, with the provenance of every run, into one folder small enough for git.

For long unattended runs (a CPU for hours, or a GPU machine without DVC or network)::

    python -m clockpizza.tools.paper_scale --preset paper_cpu_narrow --out results/paper_cpu_narrow
    python -m clockpizza.tools.paper_scale --preset fig1 --out results/fig1 --runs /scratch/fig1
    python -m clockpizza.tools.paper_scale --preset fig1 --out /tmp/dry --dry-run   # seconds

What it writes into ``--out`` (the shipped part: no weights):

- ``params.yaml``: exactly the params that ran (the preset copied into the grid keys, then the
  ``--set`` overrides), and ``command.txt``, the command line;
- after each width: ``runs.parquet``, ``circles.parquet``, ``dynamics.parquet`` (the metrics
  stage's tables, for every finished width), ``provenance.parquet`` (per run: device, CPU,
  threads, engine, precision, the wall time of the chunk that trained it, the commit and torch
  version of the process that trained it, also in each run's ``provenance.json``),
  ``summary.json`` (the metrics stage's summary, the
  fitted boundary included) and ``meta.json`` (which widths are done, wall times).

The weights go to ``--runs`` (default ``<out>/runs``, which a ``.gitignore`` written there keeps
out of git). Run it again with the same arguments after a kill: whole runs are reused by run id,
an interrupted chunk resumes from its checkpoint (``train.checkpoint_minutes``), and the tables
are rewritten. A second process can share the work: ``--widths 64 --train-only`` with the same
``--out`` and ``--runs`` trains those widths and writes no table; the first reuses its runs, with
their provenance, when it gets there. ``--dry-run`` shrinks the preset (widths 8 and 16, the ends
and the middle of its α grid, one seed, 30 steps) to check the whole path before spending machine
time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import torch
import yaml
from tqdm import tqdm

from clockpizza.analysis.collect import collect_tables
from clockpizza.io.params import PRESET_TARGETS, Params, ParamsError, parse_params
from clockpizza.io.table import (
    CIRCLES_SCHEMA,
    DYNAMICS_SCHEMA,
    write_json,
    write_parquet,
    write_runs_table,
    write_table,
    write_text,
)
from clockpizza.results.boundary import boundary_to_json, fit_main
from clockpizza.results.phases import summarize
from clockpizza.results.shipped import train_hours
from clockpizza.science.data import make_dataset
from clockpizza.science.grid import run_dir, split_reused, train_grid
from clockpizza.science.spec import group_specs
from clockpizza.science.train import describe_device, resolve_device

PROVENANCE = "provenance.json"  # beside a run's config.json: what trained it
PROVENANCE_COLUMNS = ("run_id", "width", "seed", "attn_rate", "device", "cpu", "threads",
                      "engine", "precision", "steps", "chunk_wall_s", "chunk_models",
                      "resumed_from", "commit", "torch", "trained_by")


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
        raise ParamsError(f"--preset {preset!r}: allowed: {', '.join(sorted(presets))}")
    out = json.loads(json.dumps(raw))  # a deep copy of plain YAML data
    for key, value in presets[preset].items():
        if key not in PRESET_TARGETS:
            raise ParamsError(f"presets.{preset}.{key}: not a preset key; allowed: "
                              f"{', '.join(PRESET_TARGETS)}")
        _set(out, PRESET_TARGETS[key], value)
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


# Sections of params.yaml that neither training nor the tables read: a section added to
# params.yaml after a folder was started must not stop it from resuming.
UNREAD_SECTIONS = ("neurons",)


# Keys added to params.yaml after folders were made, with the value those folders ran with: a
# folder without the key made the same runs as one with that value.
ADDED_KEYS: dict[tuple[str, str], object] = {("train", "flush_denormals"): False}


def grid_differences(kept: dict[str, Any], chosen: dict[str, Any]) -> list[str]:
    """The keys (dotted) in which a folder's recorded params and the params chosen now differ,
    but for :data:`UNREAD_SECTIONS` and :data:`ADDED_KEYS` missing from either at their value;
    empty where they make the same runs and tables."""
    def read(d: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in d.items() if k not in UNREAD_SECTIONS}
        for (section, key), value in ADDED_KEYS.items():
            if isinstance(out.get(section), dict) and key not in out[section]:
                out[section] = {**out[section], key: value}
        return out
    a, b = read(kept), read(chosen)
    diff = []
    for top in sorted(set(a) | set(b), key=str):
        x, y = a.get(top), b.get(top)
        if isinstance(x, dict) and isinstance(y, dict):
            diff += [f"{top}.{k}" for k in sorted(set(x) | set(y), key=str) if x.get(k) != y.get(k)]
        elif x != y:
            diff.append(str(top))
    return diff


def git_commit(root: Path = Path()) -> str:
    """The checkout's commit, ``+dirty`` when tracked files differ from it. Outside a git
    checkout (a copied tree on a GPU machine) the ``CLOCKPIZZA_COMMIT`` environment variable
    (set by whoever copied it), else ``unknown``."""
    copied = os.environ.get("CLOCKPIZZA_COMMIT", "unknown")
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"], check=True, capture_output=True,
                               text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return copied
    return sha + ("+dirty" if dirty else "")


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), e.g. ``AMD EPYC``; the platform's otherwise."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_provenance(paths: list[Path], commit: str, trained_by: str) -> None:
    """Beside each run just trained: what trained it (``provenance.json``), so a run trained by
    another process (``--train-only``) and reused here keeps its own record."""
    for path in paths:
        write_json(path / PROVENANCE, {"commit": commit, "cpu": cpu_model(),
                                       "threads": torch.get_num_threads(),
                                       "torch": torch.__version__, "trained_by": trained_by})


def _provenance_rows(paths: list[Path]) -> list[dict[str, Any]]:
    """A provenance row per run that has a ``provenance.json``."""
    rows = []
    for path in paths:
        if not (path / PROVENANCE).is_file():
            continue
        config = json.loads((path / "config.json").read_text())
        timing = config.get("timing") or {}
        rows.append({
            "run_id": config["run_id"], "width": config["d_model"], "seed": config["init_seed"],
            "attn_rate": config["attn_rate"], "device": config["device"],
            "engine": config["engine"], "precision": config["precision"],
            "steps": config["steps"], "chunk_wall_s": timing.get("wall_s"),
            "chunk_models": timing.get("n_models"),
            "resumed_from": timing.get("resumed_from", 0),
            **json.loads((path / PROVENANCE).read_text()),
        })
    return rows


def _merge_provenance(out: Path, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The provenance table with ``rows`` added (a run trained again replaces its row)."""
    path = out / "provenance.parquet"
    old = pd.read_parquet(path) if path.exists() else pd.DataFrame(columns=PROVENANCE_COLUMNS)
    new = pd.DataFrame(rows, columns=list(PROVENANCE_COLUMNS))
    both = pd.concat([df for df in (old, new) if not df.empty] or [old], ignore_index=True)
    both = both.drop_duplicates("run_id", keep="last")
    return both.sort_values(["width", "seed", "attn_rate"], kind="stable").reset_index(drop=True)


def measure(params: Params, widths: list[int], runs_root: Path, dataset: pd.DataFrame,
            out: Path, device: torch.device) -> pd.DataFrame:
    """The metrics stage's tables for the runs of ``widths``, written into ``out``."""
    done = dataclasses.replace(params, width=tuple(widths))
    tables = collect_tables(done, runs_root, dataset, device)
    write_runs_table(out / "runs.parquet", tables.runs)
    write_table(out / "circles.parquet", tables.circles, CIRCLES_SCHEMA)
    write_table(out / "dynamics.parquet", tables.dynamics, DYNAMICS_SCHEMA)
    b = params.boundary
    fit = fit_main(tables.runs, n_boot=b.n_boot, boot_seed=b.boot_seed)
    write_json(out / "boundary.json", boundary_to_json(fit))
    write_json(out / "summary.json", summarize(tables.runs, boundary_width=params.render.fig1_width,
                                               boundary=fit))
    return tables.runs


def run(params: Params, out: Path, runs_root: Path, *, command: str,
        widths: list[int] | None = None, seeds: list[int] | None = None,
        attn_rates: list[float] | None = None, train_only: bool = False,
        measure_only: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train ``params``' grid width by width (``widths``: only these); after each, measure and
    write the tables, unless ``train_only`` (a second process sharing the work: its runs are
    reused, with their provenance, by the one that writes the tables). ``measure_only``: train
    nothing; write the tables of the widths whose runs are all whole (while another process
    trains the rest)."""
    device = resolve_device(params.train.device)
    d = params.data
    dataset = make_dataset(d.p, d.train_frac, d.split_seed)
    commit = git_commit()
    meta_path = out / "meta.json"
    meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if not measure_only or "command" not in meta:  # the record names what trained the runs
        meta["command"] = command
    meta.update({"preset_grid": {
        "attn_rate": list(params.attn_rate), "width": list(params.width),
        "seed": list(params.seed), "steps": params.train.steps}})
    meta.setdefault("widths_done", [])
    meta.setdefault("wall_s", {})
    mine = [w for w in params.width if widths is None or w in widths]
    my_seeds = [s for s in params.seed if seeds is None or s in seeds]
    my_rates = [a for a in params.attn_rate if attn_rates is None or a in attn_rates]
    n_models = len(my_rates) * len(mine) * len(my_seeds)
    with tqdm(total=n_models * params.train.steps, unit="model-step", unit_scale=True,
              desc=f"train {n_models} models on {describe_device(device)}") as bar:
        for width in mine:
            t0 = time.perf_counter()
            trained: list[Path] = []
            missing = 0
            for seed in my_seeds:
                base = bar.n

                def progress(model_steps: int, base: int = base) -> None:
                    bar.update(base + model_steps - bar.n)

                specs = [s for s in group_specs(params, width, seed) if s.attn_rate in my_rates]
                if measure_only:
                    missing += len(split_reused(params, runs_root, specs)[0])
                    continue
                outcome = train_grid(params, dataset, runs_root, specs, on_progress=progress,
                                     checkpoints=runs_root / ".checkpoints")
                write_provenance(outcome.trained, commit, command)
                trained += outcome.trained
                bar.update(base + len(specs) * params.train.steps - bar.n)
            train_s = time.perf_counter() - t0
            if missing:
                log(f"[paper_scale] width {width}: {missing} runs not trained yet")
                continue
            if train_only:
                log(f"[paper_scale] width {width}: {len(trained)} runs trained ({train_s:.0f} s)")
                continue
            paths = [run_dir(runs_root, spec) for seed in params.seed
                     for spec in group_specs(params, width, seed)]
            prov = _merge_provenance(out, _provenance_rows(paths))
            t1 = time.perf_counter()
            done = [w for w in params.width if w in {*meta["widths_done"], width}]
            measure(params, done, runs_root, dataset, out, device)
            write_parquet(out / "provenance.parquet", prov)
            if trained:
                meta["wall_s"][str(width)] = {"train_s": round(train_s, 1),
                                              "measure_s": round(time.perf_counter() - t1, 1),
                                              "runs_trained": len(trained)}
            meta["widths_done"] = done
            meta.update({"device": describe_device(device), "cpu": cpu_model(),
                         "threads": torch.get_num_threads(), "commit_last": commit,
                         "torch": torch.__version__, "python": platform.python_version()})
            write_json(meta_path, meta)
            write_text(out / "README.md", results_readme(out, meta, params, prov))
            log(f"[paper_scale] width {width}: {len(trained)} runs trained "
                f"({train_s:.0f} s), tables of widths {done} in {out}")
    return meta


_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("clockpizza.tools", "templates"), trim_blocks=True,
    lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)


def results_readme(out: Path, meta: dict[str, Any], params: Params,
                   provenance: pd.DataFrame) -> str:
    """The folder's README: what made it, what is done, where it ran, and the other commands
    that trained some of its runs (``--train-only`` helpers), as ``provenance`` records them."""
    helpers = []
    for cmd, g in provenance[provenance["trained_by"] != meta["command"]].groupby(
            "trained_by", sort=True):
        helpers.append({"command": cmd, "runs": len(g),
                        "widths": sorted(int(w) for w in g["width"].unique()),
                        "hours": train_hours(g)})
    return _TEMPLATES.get_template("results_readme.md.j2").render(
        out=out.name, complete=set(meta["widths_done"]) == set(params.width),
        grid=meta["preset_grid"], command=meta["command"], widths_done=meta["widths_done"],
        device=meta["device"], cpu=meta["cpu"], torch=meta["torch"], python=meta["python"],
        wall_s=meta["wall_s"], helpers=helpers)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", required=True, help="a key of presets in params.yaml")
    ap.add_argument("--out", required=True, type=Path, help="folder of the tables (created)")
    ap.add_argument("--runs", type=Path, default=None,
                    help="folder of the weights (default: <out>/runs, kept out of git)")
    ap.add_argument("--params", default="params.yaml", type=Path)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a params key after the preset, e.g. train.precision=tf32")
    ap.add_argument("--dry-run", action="store_true", help="a tiny version of the preset")
    ap.add_argument("--widths", type=int, nargs="+", default=None,
                    help="train only these widths of the preset")
    ap.add_argument("--train-only", action="store_true",
                    help="write no tables: a second process sharing the work (same --out and "
                         "--runs); the process that writes the tables reuses its runs")
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="with --train-only: train only these seeds of the preset")
    ap.add_argument("--attn-rates", type=float, nargs="+", default=None,
                    help="with --train-only: train only these attention rates of the preset "
                         "(two processes can share one width and seed this way)")
    ap.add_argument("--measure-only", action="store_true",
                    help="train nothing: the tables of the widths already trained")
    args = ap.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    # The folder's record names the command that makes it whole; --measure-only trains nothing,
    # so a folder whose runs all came from --train-only helpers records the plain command.
    command = "python -m clockpizza.tools.paper_scale " + shlex.join(
        [a for a in given if a != "--measure-only"])
    try:
        raw = yaml.safe_load(args.params.read_text())
        chosen = preset_params(raw, args.preset, args.set, args.dry_run)
        text = yaml.safe_dump(chosen, sort_keys=False)
        kept = args.out / "params.yaml"
        differ = grid_differences(yaml.safe_load(kept.read_text()), chosen) if kept.exists() else []
        if differ:
            raise ParamsError(f"{kept}: made with other params than --preset {args.preset} "
                              f"{' '.join('--set ' + s for s in args.set)} gives now (they "
                              f"differ in {', '.join(differ)}); its tables would mix two grids. "
                              "Use --set KEY=VALUE to match it, another --out, or delete it")
        params = parse_params(chosen)
        bad = sorted(set(args.widths or ()) - set(params.width))
        if bad:
            raise ParamsError(f"--widths {bad}: not widths of the preset; allowed: "
                              f"{list(params.width)}")
        if args.train_only and args.measure_only:
            raise ParamsError("--train-only and --measure-only: one or the other")
        bad = sorted(set(args.seeds or ()) - set(params.seed))
        if bad:
            raise ParamsError(f"--seeds {bad}: not seeds of the preset; allowed: "
                              f"{list(params.seed)}")
        bad = sorted(a for a in args.attn_rates or () if a not in params.attn_rate)
        if bad:
            raise ParamsError(f"--attn-rates {bad}: not attention rates of the preset; "
                              f"allowed: {list(params.attn_rate)}")
        if (args.seeds or args.attn_rates) and not args.train_only:
            raise ParamsError("--seeds and --attn-rates train part of a width, so they need "
                              "--train-only; run --measure-only once every part is trained")
        if not args.train_only:  # the folder's record is the table writer's alone
            args.out.mkdir(parents=True, exist_ok=True)
            if not kept.exists():  # the record of what ran first stays as it was written
                write_text(kept, text)
            if not args.measure_only or not (args.out / "command.txt").exists():
                write_text(args.out / "command.txt", command + "\n")
    except (OSError, ParamsError) as e:
        print(f"[paper_scale] error: {e}", file=sys.stderr)
        return 2
    runs_root = args.runs or args.out / "runs"
    if args.runs is None and not args.train_only:
        write_text(args.out / ".gitignore", "/runs/\n")
    run(params, args.out, runs_root, command=command, widths=args.widths, seeds=args.seeds,
        attn_rates=args.attn_rates, train_only=args.train_only, measure_only=args.measure_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
