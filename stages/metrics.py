"""Stage metrics: one row per run of the grid in params.yaml -> metrics/runs.parquet, one row
per circle of each run's embedding -> metrics/circles.parquet, one row per run and snapshot step
-> metrics/dynamics.parquet; summary.json and the DVC data plots' CSVs."""

from clockpizza.analysis.collect import collect_tables, collect_timing
from clockpizza.io.cli import run_stage
from clockpizza.io.params import load_params
from clockpizza.io.table import (
    CIRCLES_SCHEMA,
    DYNAMICS_SCHEMA,
    write_json,
    write_runs_table,
    write_table,
    write_text,
)
from clockpizza.results.dynamics import dynamics_medians
from clockpizza.results.paper_compare import medians_by_width, read_published_runs
from clockpizza.results.phases import summarize
from clockpizza.science.data import load_dataset

DATASET, RUNS = "data/dataset.parquet", "runs"
TABLE, CIRCLES, SUMMARY = "metrics/runs.parquet", "metrics/circles.parquet", "metrics/summary.json"
TIMING = "metrics/timing.json"
PUBLISHED = "paper/published_runs_fixed_width.csv"  # the authors' runs (MIT, paper/LICENSE)
MEDIANS = "metrics/plots/medians.csv"  # the DVC data plots of dvc.yaml's `plots:`
DYNAMICS, DYNAMICS_PLOT = "metrics/dynamics.parquet", "metrics/plots/dynamics.csv"


def main() -> None:
    params = load_params()
    tables = collect_tables(params, RUNS, load_dataset(DATASET, params.data.p))
    write_runs_table(TABLE, tables.runs)
    write_table(CIRCLES, tables.circles, CIRCLES_SCHEMA)
    write_table(DYNAMICS, tables.dynamics, DYNAMICS_SCHEMA)
    write_text(DYNAMICS_PLOT, dynamics_medians(tables.dynamics, tables.runs).to_csv(
        index=False, float_format="%.6f", lineterminator="\n"))
    write_json(SUMMARY, summarize(tables.runs, boundary_width=params.render.fig1_width,
                                  n_boot=params.boundary.n_boot,
                                  boot_seed=params.boundary.boot_seed,
                                  published=read_published_runs(PUBLISHED)))
    write_text(MEDIANS, medians_by_width(tables.runs).to_csv(index=False, float_format="%.6f",
                                                             lineterminator="\n"))
    write_json(TIMING, collect_timing(params, RUNS))
    print(f"[metrics] {len(tables.runs)} runs -> {TABLE}; {len(tables.circles)} circles -> "
          f"{CIRCLES}; summary -> {SUMMARY}")


if __name__ == "__main__":
    run_stage("metrics", main)
