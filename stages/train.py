"""Stage train@<width>-<seed>: every transformer of one (width, seed), one batch per shape.

A shape is one combination of model.n_layers × model.act × data.diff_vocab × data.eqn_sign; each
trains all attention rates at once as one batched model.
"""

import argparse

from tqdm import tqdm

from clockpizza.io.cli import run_stage
from clockpizza.io.params import ParamsError, group_specs, load_params
from clockpizza.science.data import load_dataset
from clockpizza.science.grid import train_and_save

DATASET, RUNS = "data/dataset.parquet", "runs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--seed", type=int, required=True)
    args = ap.parse_args()
    params = load_params()
    if args.width not in params.width or args.seed not in params.seed:
        raise ParamsError(f"--width {args.width} --seed {args.seed} is not in the grid "
                          f"(width: {list(params.width)}, seed: {list(params.seed)})")
    dataset = load_dataset(DATASET, params.data.p)
    n_models, steps = len(group_specs(params, args.width, args.seed)), params.train.steps
    with tqdm(total=n_models * steps, unit="model-step", unit_scale=True, smoothing=0.1,
              desc=f"train w{args.width} s{args.seed} ({n_models} models)") as bar:
        def progress(model_steps: int) -> None:
            bar.update(model_steps - bar.n)

        paths = train_and_save(params, args.width, args.seed, dataset, RUNS, progress)
    print(f"[train] wrote {len(paths)} runs under {paths[0].parent}")


if __name__ == "__main__":
    run_stage("train", main)
