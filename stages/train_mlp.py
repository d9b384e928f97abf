"""Stage train_mlp@<model>-<seed>: one attention-free model (A, B, C, D or X of SPEC.md)."""

import argparse

from tqdm import tqdm

from clockpizza.io.cli import run_stage
from clockpizza.io.params import MLP_MODELS, ParamsError, load_params
from clockpizza.science.data import load_dataset
from clockpizza.science.grid import train_mlp_and_save

DATASET, RUNS = "data/dataset.parquet", "runs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, choices=MLP_MODELS)
    ap.add_argument("--seed", type=int, required=True)
    args = ap.parse_args()
    params = load_params()
    if args.model not in params.mlp_family.models or args.seed not in params.seed:
        raise ParamsError(f"--model {args.model} --seed {args.seed} is not in the grid "
                          f"(mlp_family.models: {list(params.mlp_family.models)}, "
                          f"seed: {list(params.seed)})")
    dataset = load_dataset(DATASET, params.data.p)
    with tqdm(total=params.train.steps, unit="step", unit_scale=True, smoothing=0.1,
              desc=f"train model {args.model} s{args.seed}") as bar:
        def progress(model_steps: int) -> None:
            bar.update(model_steps - bar.n)

        paths = train_mlp_and_save(params, args.model, args.seed, dataset, RUNS, progress)
    print(f"[train_mlp] wrote {paths[0]}")


if __name__ == "__main__":
    run_stage("train_mlp", main)
