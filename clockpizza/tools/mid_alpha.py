"""What are the symmetric, distance-irrelevant runs at mid α? The experiment of issue 9, item 8.

At the paper's 20 000 steps some width-32 runs at α 0.35-0.45 end with GS ≥ 0.97 and DI ≥ 0.8:
neither the paper's pizza (low DI) nor its clock (low GS). Today every rate of a (width, seed)
group starts from the same weights and every run sees the same split; each of the paper's runs had
its own. This trains the ``mid_alpha`` preset of params.yaml under three conditions and, as a
control, a few runs with the paper's own one-model loop (:mod:`clockpizza.tools.bench`):

- ``shared``: today's default (one start per seed, one split);
- ``own_init``: ``model.init_per_run``: each run its own initial weights;
- ``own_init_split``: also ``data.split_per_run``: each run its own split, as the paper's;
- ``paper_loop``: one model at a time, the paper's training loop and initialisation, its own
  split, then measured with the same metrics.

Writes ``<out>/<condition>/`` (paper_scale's folder) and ``<out>/mid_alpha.csv``: one row per run
with the condition, α, seed, GS (paper triples and exact), both DIs, the circle summary and the
phase label::

    python -m clockpizza.tools.mid_alpha --out results/mid_alpha            # ~1.5 h, 2 cores
    python -m clockpizza.tools.mid_alpha --out /tmp/ma --steps 30 --control-runs 1  # seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml
from tqdm import tqdm

from clockpizza.analysis.circles import analyse_models, run_summary
from clockpizza.analysis.metrics import gs_triples, model_metrics
from clockpizza.io.params import Params, load_params
from clockpizza.io.table import MID_ALPHA_SCHEMA
from clockpizza.results.phases import classify
from clockpizza.science import reference
from clockpizza.science.architectures import load_model, model_config
from clockpizza.science.data import make_dataset
from clockpizza.science.model import TransformerConfig, init_params, stack
from clockpizza.science.spec import RunSpec, group_specs
from clockpizza.science.train import SplitTensors
from clockpizza.tools import paper_scale

CONDITIONS: dict[str, list[str]] = {
    "shared": [],
    "own_init": ["model.init_per_run=true"],
    "own_init_split": ["model.init_per_run=true", "data.split_per_run=true"],
}
# The CSV's columns: the schema the summarise stage reads it with, less what it adds.
COLUMNS = tuple(c for c in MID_ALPHA_SCHEMA.names if c != "phase_now")


def paper_loop_weights(cfg: TransformerConfig, spec: RunSpec, data: SplitTensors,
                       on_step: Any = None) -> dict[str, torch.Tensor]:
    """One model trained with the paper's loop (:func:`clockpizza.science.reference.train_one`),
    its weights stacked as a batch of one (``[1, ...]`` each)."""
    weights = reference.train_one(init_params(cfg, spec.weights_seed), spec, data, spec.steps,
                                  on_step)
    return {k: v.contiguous()[None] for k, v in weights.items()}


def control_rows(params: Params, n_runs: int) -> pd.DataFrame:
    """The paper-loop control: the first ``n_runs`` runs of the grid (α-major over seed 0 and
    the first width), each with its own initial weights and its own split."""
    width, p = params.width[0], params.data.p
    specs = [s for seed in params.seed for s in group_specs(params, width, seed)]
    specs = sorted(specs, key=lambda s: (s.init_seed, s.attn_rate))[:n_runs]
    rows = []
    c = params.circles
    triples = gs_triples(p, params.metrics.gs_triples, params.metrics.gs_seed) \
        if params.metrics.gs_triples else None
    with tqdm(total=n_runs * params.train.steps, unit="step", desc="paper loop") as bar:
        for spec in specs:
            own = dataclasses.replace(spec, init_per_run=True, split_per_run=True)
            table = make_dataset(p, params.data.train_frac, own.data_split_seed)
            data = SplitTensors.from_table(table, p, torch.device("cpu"))
            cfg = model_config(own)
            weights = paper_loop_weights(cfg, own, data, on_step=lambda: bar.update(1))
            model = load_model(cfg, stack([{k: v[0] for k, v in weights.items()}]),
                               [own.attn_rate])
            is_train = torch.as_tensor(table["is_train"].to_numpy(copy=True))
            with torch.no_grad():
                values = model_metrics(model, p, triples, params.metrics.n_components, is_train)
            circles = analyse_models(model, p, max_circles=c.max_circles,
                                     min_var_share=c.min_var_share, min_fve=c.min_fve,
                                     type_from=c.type_from)[0]
            rows.append({"condition": "paper_loop", "attn_rate": own.attn_rate, "width": width,
                         "seed": own.init_seed, "steps": own.steps,
                         **{k: float(v[0]) for k, v in values.items()}, **run_summary(circles)})
    df = pd.DataFrame(rows)
    df["phase"] = classify(df, params.phase)
    return df


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml", type=Path)
    ap.add_argument("--conditions", default=",".join(CONDITIONS),
                    help=f"comma-separated, of {', '.join(CONDITIONS)}")
    ap.add_argument("--control-runs", type=int, default=2, help="paper-loop runs (0: none)")
    ap.add_argument("--steps", type=int, default=0, help="override the preset's steps (a dry run)")
    args = ap.parse_args(argv)
    names = [c for c in args.conditions.split(",") if c]
    bad = [c for c in names if c not in CONDITIONS]
    if bad:
        print(f"[mid_alpha] error: --conditions {bad}: allowed {list(CONDITIONS)}", file=sys.stderr)
        return 2
    extra = [f"train.steps={args.steps}"] if args.steps else []
    frames = []
    raw = yaml.safe_load(args.params.read_text())
    for name in names:
        folder = args.out / name
        chosen = paper_scale.preset_params(raw, "mid_alpha", CONDITIONS[name] + extra, False)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "params.yaml").write_text(yaml.safe_dump(chosen, sort_keys=False))
        paper_scale.run(load_params(folder / "params.yaml"), folder, folder / "runs",
                        command=f"python -m clockpizza.tools.mid_alpha (condition {name})")
        frames.append(pd.read_parquet(folder / "runs.parquet").assign(condition=name))
    if args.control_runs:
        chosen = paper_scale.preset_params(raw, "mid_alpha", extra, False)
        (args.out / "paper_loop").mkdir(parents=True, exist_ok=True)
        (args.out / "paper_loop" / "params.yaml").write_text(yaml.safe_dump(chosen,
                                                                              sort_keys=False))
        frames.append(control_rows(load_params(args.out / "paper_loop" / "params.yaml"),
                                   args.control_runs))
    table = pd.concat(frames, ignore_index=True).reindex(columns=list(COLUMNS))
    table.to_csv(args.out / "mid_alpha.csv", index=False, float_format="%.6g")
    print(json.dumps({"rows": len(table), "out": str(args.out / "mid_alpha.csv")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
