"""Stage summarise (cheap: no model is read): the measured tables labelled by the phase rule ->
metrics/runs.parquet and metrics/dynamics.parquet; the phase boundary fitted once, with its
bootstrap -> metrics/boundary.json; the DVC metrics -> metrics/summary.json; the DVC data
plots -> metrics/plots/*.csv."""

import pandas as pd

from clockpizza.io.cli import run_stage
from clockpizza.io.params import load_params
from clockpizza.io.table import (
    DYNAMICS_SCHEMA,
    MEASURED_SCHEMA,
    SNAPSHOTS_SCHEMA,
    read_table,
    write_json,
    write_runs_table,
    write_table,
    write_text,
)
from clockpizza.results.boundary import boundary_to_json, fit_main
from clockpizza.results.dynamics import dynamics_medians
from clockpizza.results.labels import label_tables
from clockpizza.results.paper_compare import medians_by_width, read_published_runs
from clockpizza.results.phases import summarize

MEASURED, SNAPSHOTS = "metrics/measured.parquet", "metrics/snapshots.parquet"
TABLE, DYNAMICS = "metrics/runs.parquet", "metrics/dynamics.parquet"
BOUNDARY, SUMMARY = "metrics/boundary.json", "metrics/summary.json"
PUBLISHED = "paper/published_runs_fixed_width.csv"  # the authors' runs (MIT, paper/LICENSE)
MEDIANS = "metrics/plots/medians.csv"  # the DVC data plots of dvc.yaml's `plots:`
DYNAMICS_PLOT = "metrics/plots/dynamics.csv"


def _csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, float_format="%.6f", lineterminator="\n")


def main() -> None:
    params = load_params()
    runs, dynamics = label_tables(read_table(MEASURED, MEASURED_SCHEMA, "metrics"),
                                  read_table(SNAPSHOTS, SNAPSHOTS_SCHEMA, "metrics"),
                                  params.phase)
    boundary = fit_main(runs, n_boot=params.boundary.n_boot, boot_seed=params.boundary.boot_seed)
    write_runs_table(TABLE, runs)
    write_table(DYNAMICS, dynamics, DYNAMICS_SCHEMA)
    write_json(BOUNDARY, boundary_to_json(boundary))
    write_json(SUMMARY, summarize(runs, boundary_width=params.render.fig1_width,
                                  boundary=boundary, published=read_published_runs(PUBLISHED)))
    write_text(MEDIANS, _csv(medians_by_width(runs)))
    write_text(DYNAMICS_PLOT, _csv(dynamics_medians(dynamics, runs)))
    print(f"[summarise] {len(runs)} runs labelled -> {TABLE}; boundary -> {BOUNDARY}; "
          f"summary -> {SUMMARY}")


if __name__ == "__main__":
    run_stage("summarise", main)
