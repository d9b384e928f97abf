"""Stage dataset: all p² pairs (a, b), their label (a + b) mod p and a seeded split."""

import sys
from pathlib import Path

# This checkout's package (the code dvc.yaml hashes), even where another clone is pip-installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clockpizza.io.cli import run_stage
from clockpizza.io.params import load_params
from clockpizza.io.table import write_parquet
from clockpizza.science.data import make_dataset

OUT = "data/dataset.parquet"


def main() -> None:
    d = load_params().data
    df = make_dataset(d.p, d.train_frac, d.split_seed)
    write_parquet(OUT, df)
    print(f"[dataset] {len(df)} pairs, {int(df.is_train.sum())} train -> {OUT}")


if __name__ == "__main__":
    run_stage("dataset", main)
