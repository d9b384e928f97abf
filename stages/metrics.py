"""Stage metrics: one row per run of the grid in params.yaml -> metrics/runs.parquet, and one row
per circle of each run's embedding -> metrics/circles.parquet."""

from clockpizza.analysis.collect import collect_tables, collect_timing
from clockpizza.io.cli import run_stage
from clockpizza.io.params import load_params
from clockpizza.io.table import CIRCLES_SCHEMA, write_json, write_runs_table, write_table
from clockpizza.results.phases import summarize
from clockpizza.science.data import load_dataset

DATASET, RUNS = "data/dataset.parquet", "runs"
TABLE, CIRCLES, SUMMARY = "metrics/runs.parquet", "metrics/circles.parquet", "metrics/summary.json"
TIMING = "metrics/timing.json"


def main() -> None:
    params = load_params()
    tables = collect_tables(params, RUNS, load_dataset(DATASET, params.data.p))
    write_runs_table(TABLE, tables.runs)
    write_table(CIRCLES, tables.circles, CIRCLES_SCHEMA)
    write_json(SUMMARY, summarize(tables.runs, boundary_width=params.render.fig1_width,
                                  n_boot=params.boundary.n_boot,
                                  boot_seed=params.boundary.boot_seed))
    write_json(TIMING, collect_timing(params, RUNS))
    print(f"[metrics] {len(tables.runs)} runs -> {TABLE}; {len(tables.circles)} circles -> "
          f"{CIRCLES}; summary -> {SUMMARY}")


if __name__ == "__main__":
    run_stage("metrics", main)
