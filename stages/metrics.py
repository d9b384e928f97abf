"""Stage metrics: every run of the grid in params.yaml measured (the expensive part: each
model's GS over all p³ triples, its circles, every snapshot) -> metrics/measured.parquet (one
row per run, no phase yet), metrics/circles.parquet (one row per circle), metrics/snapshots.parquet
(one row per run and snapshot step), and the grid's training wall time -> metrics/timing.json.
The summarise stage labels and summarises these tables."""

import sys
from pathlib import Path

# This checkout's package (the code dvc.yaml hashes), even where another clone is pip-installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clockpizza.analysis.collect import collect_timing, measure_tables
from clockpizza.io.cli import run_stage
from clockpizza.io.params import load_params
from clockpizza.io.table import (
    CIRCLES_SCHEMA,
    MEASURED_SCHEMA,
    SNAPSHOTS_SCHEMA,
    write_json,
    write_table,
)
from clockpizza.science.data import load_dataset

DATASET, RUNS = "data/dataset.parquet", "runs"
MEASURED, CIRCLES = "metrics/measured.parquet", "metrics/circles.parquet"
SNAPSHOTS, TIMING = "metrics/snapshots.parquet", "metrics/timing.json"


def main() -> None:
    params = load_params()
    tables = measure_tables(params, RUNS, load_dataset(DATASET, params.data.p))
    write_table(MEASURED, tables.runs, MEASURED_SCHEMA)
    write_table(CIRCLES, tables.circles, CIRCLES_SCHEMA)
    write_table(SNAPSHOTS, tables.dynamics, SNAPSHOTS_SCHEMA)
    write_json(TIMING, collect_timing(params, RUNS))
    print(f"[metrics] {len(tables.runs)} runs -> {MEASURED}; {len(tables.circles)} circles -> "
          f"{CIRCLES}; {len(tables.dynamics)} snapshots -> {SNAPSHOTS}")


if __name__ == "__main__":
    run_stage("metrics", main)
