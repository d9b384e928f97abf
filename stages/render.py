"""Stage render: figures and report/README.md from the metrics tables alone (and the paper's
published runs and released models, measured by the paper_models stage)."""

import json
import sys
from pathlib import Path

# This checkout's package (the code dvc.yaml hashes), even where another clone is pip-installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd

from clockpizza.figures.example_plots import example_figure
from clockpizza.figures.paper_scale import (
    PS_FIGURES,
    paper_scale_context,
    paper_scale_figures,
)
from clockpizza.figures.plots import save
from clockpizza.figures.plots_neurons import NEURON_FIGURES
from clockpizza.figures.report import (
    ALL_FIGURES,
    FIG3,
    PaperInputs,
    build_report,
    draw_figures,
    examples_context,
    load_timing,
)
from clockpizza.figures.report_neurons import (
    draw_neuron_figures,
    load_neuron_inputs,
    neurons_context,
)
from clockpizza.io.cli import run_stage
from clockpizza.io.params import load_params
from clockpizza.io.table import (
    CIRCLES_SCHEMA,
    DYNAMICS_SCHEMA,
    EXAMPLE_TABLES,
    PAPER_MODELS_SCHEMA,
    PAPER_SCALE_SCHEMA,
    read_runs_table,
    read_table,
    write_text,
)
from clockpizza.results.boundary import boundary_from_json
from clockpizza.results.paper_compare import PAPER_EXAMPLES, read_published_runs

TABLE, FIGURES, REPORT = "metrics/runs.parquet", "report/figures", "report/README.md"
CIRCLES, EXAMPLES = "metrics/circles.parquet", "metrics/examples"
DYNAMICS = "metrics/dynamics.parquet"
BOUNDARY = "metrics/boundary.json"  # fitted once, by the summarise stage
# The paper-length runs shipped under results/, as the summarise stage read them.
PS_RUNS, PS_SUMMARY = "metrics/paper_scale_runs.parquet", "metrics/paper_scale.json"
PS_BOUNDARY = "metrics/paper_scale_boundary.json"
# The training wall time recorded by the metrics stage (clockpizza.figures.report.load_timing).
TIMING = "metrics/timing.json"
# The paper: its published runs (in git), its models measured (stage paper_models) and the
# mid-α experiment's table (in git; python -m clockpizza.tools.mid_alpha).
PUBLISHED = "paper/published_runs_fixed_width.csv"
PAPER_MODELS, PAPER_CIRCLES = "metrics/paper_models.parquet", "metrics/paper_circles.parquet"
PAPER_EXAMPLES_DIR = "metrics/paper_examples"
MID_ALPHA = "results/mid_alpha/mid_alpha.csv"


def main() -> None:
    params = load_params()
    runs = read_runs_table(TABLE)
    if runs.empty:
        raise ValueError(f"{TABLE}: no runs, nothing to draw")
    have_paper = Path(PAPER_MODELS).is_file()
    paper = PaperInputs(
        models=read_table(PAPER_MODELS, PAPER_MODELS_SCHEMA, "paper_models") if have_paper
        else None,
        published=read_published_runs(PUBLISHED) if Path(PUBLISHED).is_file() else None,
        mid_alpha=pd.read_csv(MID_ALPHA) if Path(MID_ALPHA).is_file() else None,
    )
    dynamics = (read_table(DYNAMICS, DYNAMICS_SCHEMA, "metrics") if Path(DYNAMICS).is_file()
                else None)
    boundary = boundary_from_json(json.loads(Path(BOUNDARY).read_text()))
    figures = draw_figures(runs, fig1_width=params.render.fig1_width, boundary=boundary,
                           published=paper.published, dynamics=dynamics)

    # Figure 3: ours from the mechanism stage, the authors' from the paper_models stage.
    circles = read_table(CIRCLES, CIRCLES_SCHEMA, "metrics")
    ex = {name: read_table(f"{EXAMPLES}/{name}.parquet", schema, "mechanism")
          for name, schema in EXAMPLE_TABLES.items()}
    chosen = dict(ex["correct_logits"].drop_duplicates("role")[["role", "run_id"]].values)
    by_id = runs.set_index("run_id")
    for role in ("pizza", "clock"):
        figures[FIG3["ours", role]] = example_figure(role, ex["embedding"], ex["correct_logits"],
                                                     ex["attention"], circles,
                                                     by_id.loc[chosen[role]])
    paper_side = None
    if paper.models is not None:
        paper_circles = read_table(PAPER_CIRCLES, CIRCLES_SCHEMA, "paper_models")
        pex = {name: read_table(f"{PAPER_EXAMPLES_DIR}/{name}.parquet", schema, "paper_models")
               for name, schema in EXAMPLE_TABLES.items()}
        models = paper.models.set_index("paper_runid")
        for role, runid in PAPER_EXAMPLES.items():
            figures[FIG3["paper", role]] = example_figure(
                role, pex["embedding"], pex["correct_logits"], pex["attention"], paper_circles,
                models.loc[runid].rename({"paper_runid": "run_id"}))
        paper_side = (paper.models, paper_circles)
    shipped = Path(PS_SUMMARY).is_file()  # stage summarise; absent in a hand-made metrics/
    if shipped:
        ps_runs = read_table(PS_RUNS, PAPER_SCALE_SCHEMA, "summarise")
        figures |= paper_scale_figures(
            ps_runs, boundary_from_json(json.loads(Path(PS_BOUNDARY).read_text())),
            paper.published)
    neuron_inputs = load_neuron_inputs("metrics")  # stage neurons; None before it ran
    if neuron_inputs is not None:
        figures |= draw_neuron_figures(neuron_inputs, runs, params.neurons, boundary)
    for stem, fig in figures.items():
        save(fig, f"{FIGURES}/{stem}")
    # a figure whose data left the tables goes too
    for stem in sorted({*ALL_FIGURES, *PS_FIGURES, *NEURON_FIGURES} - set(figures)):
        for ext in (".png", ".svg"):
            Path(FIGURES, stem + ext).unlink(missing_ok=True)
    paths = {stem: f"figures/{stem}.png" for stem in figures}
    examples = examples_context(runs, circles, chosen, paths, paper_side)
    neurons = (None if neuron_inputs is None
               else neurons_context(neuron_inputs, runs, paths, params.neurons))
    write_text(REPORT, build_report(runs, paths, params.render.fig1_width, boundary=boundary,
                                    timing=load_timing(TIMING), examples=examples, paper=paper,
                                    rule=params.phase, dynamics=dynamics, neurons=neurons,
                                    paper_scale=paper_scale_context(
                                        ps_runs, json.loads(Path(PS_SUMMARY).read_text()),
                                        paths, paper.published) if shipped else None))
    print(f"[render] {len(figures)} figures -> {FIGURES}/, report -> {REPORT}")


if __name__ == "__main__":
    run_stage("render", main)
