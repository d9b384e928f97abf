"""Stage summarise (cheap: no model is read): the measured tables labelled by the phase rule ->
metrics/runs.parquet and metrics/dynamics.parquet; the phase boundary fitted once, with its
bootstrap -> metrics/boundary.json; the DVC metrics -> metrics/summary.json; the DVC data
plots -> metrics/plots/*.csv. The paper-length results shipped in git (results/*/) the same way:
relabelled, their boundary fitted -> metrics/paper_scale_runs.parquet, metrics/paper_scale.json,
metrics/paper_scale_boundary.json. The paper's side by the same rule: the authors' measured
models (stage paper_models) -> metrics/paper_models.parquet, their published runs ->
metrics/published_phases.json, the mid-α experiment's table (results/mid_alpha/, in git) ->
metrics/mid_alpha.parquet. Render only reads these."""

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
    MID_ALPHA_SCHEMA,
    PAPER_MEASURED_SCHEMA,
    PAPER_MODELS_SCHEMA,
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
from clockpizza.results.labels import label_mid_alpha, label_paper_models, label_tables
from clockpizza.results.paper_compare import (
    medians_by_width,
    published_phases,
    read_published_runs,
)
from clockpizza.results.phases import summarize
from clockpizza.results.shipped import (
    combined_runs,
    live_against_shipped,
    paper_scale_summary,
    read_shipped,
    shipped_folders,
)

# Read: what the metrics and paper_models stages measured, and what is in git.
MEASURED, SNAPSHOTS = "metrics/measured.parquet", "metrics/snapshots.parquet"
PAPER_MEASURED = "metrics/paper_measured.parquet"
PUBLISHED = "paper/published_runs_fixed_width.csv"  # the authors' runs (MIT, paper/LICENSE)
MID_ALPHA_CSV = "results/mid_alpha/mid_alpha.csv"  # python -m clockpizza.tools.mid_alpha
# Written: our runs labelled, the boundary, the DVC metrics and data plots (dvc.yaml's `plots:`)
TABLE, DYNAMICS = "metrics/runs.parquet", "metrics/dynamics.parquet"
BOUNDARY, SUMMARY = "metrics/boundary.json", "metrics/summary.json"
MEDIANS, DYNAMICS_PLOT = "metrics/plots/medians.csv", "metrics/plots/dynamics.csv"
# ... the shipped paper-length runs (results/*/), and the paper's side by the same rule
PS_RUNS, PS_SUMMARY = "metrics/paper_scale_runs.parquet", "metrics/paper_scale.json"
PS_BOUNDARY = "metrics/paper_scale_boundary.json"
PAPER_MODELS, PUBLISHED_PHASES = "metrics/paper_models.parquet", "metrics/published_phases.json"
MID_ALPHA = "metrics/mid_alpha.parquet"


def _csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, float_format="%.6f", lineterminator="\n")


def main() -> None:
    params = load_params()
    rule, published = params.phase, read_published_runs(PUBLISHED)
    runs, dynamics = label_tables(read_table(MEASURED, MEASURED_SCHEMA, "metrics"),
                                  read_table(SNAPSHOTS, SNAPSHOTS_SCHEMA, "metrics"), rule)
    boundary = fit_main(runs, n_boot=params.boundary.n_boot, boot_seed=params.boundary.boot_seed)
    write_runs_table(TABLE, runs)
    write_table(DYNAMICS, dynamics, DYNAMICS_SCHEMA)
    write_json(BOUNDARY, boundary_to_json(boundary))
    write_json(SUMMARY, summarize(runs, boundary_width=params.render.fig1_width,
                                  boundary=boundary, published=published))
    write_text(MEDIANS, _csv(medians_by_width(runs)))
    write_text(DYNAMICS_PLOT, _csv(dynamics_medians(dynamics, runs)))

    shipped = [read_shipped(folder, rule) for folder in shipped_folders()]
    ps_runs = combined_runs(shipped)
    ps_boundary = fit_main(ps_runs, n_boot=params.boundary.n_boot,
                           boot_seed=params.boundary.boot_seed) if len(ps_runs) else None
    write_table(PS_RUNS, ps_runs, PAPER_SCALE_SCHEMA)
    write_json(PS_BOUNDARY, boundary_to_json(ps_boundary))
    write_json(PS_SUMMARY, paper_scale_summary(shipped, ps_runs, ps_boundary, published, rule)
               | {"your_run": live_against_shipped(runs, shipped)})

    measured = read_table(PAPER_MEASURED, PAPER_MEASURED_SCHEMA, "paper_models")
    write_table(PAPER_MODELS, label_paper_models(measured, rule), PAPER_MODELS_SCHEMA)
    write_json(PUBLISHED_PHASES, published_phases(published, rule))
    mid_alpha = (pd.read_csv(MID_ALPHA_CSV) if Path(MID_ALPHA_CSV).is_file()
                 else pd.DataFrame(columns=MID_ALPHA_SCHEMA.names[:-1]))
    write_table(MID_ALPHA, label_mid_alpha(mid_alpha, rule), MID_ALPHA_SCHEMA)
    print(f"[summarise] {len(runs)} runs labelled -> {TABLE}; boundary -> {BOUNDARY}; "
          f"summary -> {SUMMARY}; {len(ps_runs)} paper-scale runs from {len(shipped)} "
          f"results folders -> {PS_SUMMARY}; the paper's side -> {PAPER_MODELS}, "
          f"{PUBLISHED_PHASES}, {MID_ALPHA}")


if __name__ == "__main__":
    run_stage("summarise", main)
