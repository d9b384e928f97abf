"""Stage summarise (cheap: no model is read): the measured tables labelled by the phase rule ->
metrics/runs.parquet and metrics/dynamics.parquet; the phase boundary fitted once, with its
bootstrap -> metrics/boundary.json; the DVC metrics -> metrics/summary.json; the DVC data
plots -> metrics/plots/*.csv. The paper-length results shipped in git (results/*/) the same way:
relabelled, their boundary fitted -> metrics/paper_scale_runs.parquet, metrics/paper_scale.json,
metrics/paper_scale_boundary.json."""

import sys
from pathlib import Path

# This checkout's package (the code dvc.yaml hashes), even where another clone is pip-installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd

from clockpizza.io.cli import run_stage
from clockpizza.io.params import load_params
from clockpizza.io.table import (
    DYNAMICS_SCHEMA,
    MEASURED_SCHEMA,
    PAPER_SCALE_SCHEMA,
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
from clockpizza.results.shipped import (
    combined_runs,
    paper_scale_summary,
    read_shipped,
    shipped_folders,
)

MEASURED, SNAPSHOTS = "metrics/measured.parquet", "metrics/snapshots.parquet"
TABLE, DYNAMICS = "metrics/runs.parquet", "metrics/dynamics.parquet"
BOUNDARY, SUMMARY = "metrics/boundary.json", "metrics/summary.json"
PUBLISHED = "paper/published_runs_fixed_width.csv"  # the authors' runs (MIT, paper/LICENSE)
MEDIANS = "metrics/plots/medians.csv"  # the DVC data plots of dvc.yaml's `plots:`
DYNAMICS_PLOT = "metrics/plots/dynamics.csv"
PS_RUNS, PS_SUMMARY = "metrics/paper_scale_runs.parquet", "metrics/paper_scale.json"
PS_BOUNDARY = "metrics/paper_scale_boundary.json"


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

    shipped = [read_shipped(folder, params.phase) for folder in shipped_folders()]
    ps_runs = combined_runs(shipped)
    ps_boundary = fit_main(ps_runs, n_boot=params.boundary.n_boot,
                           boot_seed=params.boundary.boot_seed) if len(ps_runs) else None
    write_table(PS_RUNS, ps_runs, PAPER_SCALE_SCHEMA)
    write_json(PS_BOUNDARY, boundary_to_json(ps_boundary))
    write_json(PS_SUMMARY, paper_scale_summary(shipped, ps_runs, ps_boundary,
                                               read_published_runs(PUBLISHED), params.phase))
    print(f"[summarise] {len(runs)} runs labelled -> {TABLE}; boundary -> {BOUNDARY}; "
          f"summary -> {SUMMARY}; {len(ps_runs)} paper-scale runs from {len(shipped)} "
          f"results folders -> {PS_SUMMARY}")


if __name__ == "__main__":
    run_stage("summarise", main)
