"""The render stage's work: what it reads, every figure, and the report's text.

Render reads; it never measures, fits or labels. Everything comes from the tables the other
stages wrote under ``metrics/`` (the boundary fitted and every phase label applied by the
summarise stage) and the authors' published runs (``paper/``, in git). A part that is absent
(a hand-made ``metrics/``, a stage not run) leaves its figures and section out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from clockpizza.figures.example_plots import example_figure
from clockpizza.figures.paper_scale import paper_scale_context, paper_scale_recipes
from clockpizza.figures.plots import FigureRecipe
from clockpizza.figures.report import (
    FIG3,
    PaperInputs,
    build_report,
    examples_context,
    figure_recipes,
    load_timing,
)
from clockpizza.figures.report_neurons import (
    NeuronInputs,
    load_neuron_inputs,
    neuron_recipes,
    neurons_context,
)
from clockpizza.io.params import NeuronsConfig
from clockpizza.io.table import (
    CIRCLES_SCHEMA,
    DYNAMICS_SCHEMA,
    EXAMPLE_TABLES,
    MID_ALPHA_SCHEMA,
    PAPER_MODELS_SCHEMA,
    PAPER_SCALE_SCHEMA,
    read_runs_table,
    read_table,
)
from clockpizza.results.boundary import Boundary, boundary_from_json
from clockpizza.results.paper_compare import PAPER_EXAMPLES, read_published_runs

PUBLISHED = "paper/published_runs_fixed_width.csv"  # the authors' runs (in git)


@dataclass(frozen=True)
class PaperScale:
    """The shipped paper-length runs as the summarise stage read them (results/*/)."""

    runs: pd.DataFrame  # metrics/paper_scale_runs.parquet
    boundary: Boundary | None  # metrics/paper_scale_boundary.json
    summary: dict[str, Any]  # metrics/paper_scale.json


@dataclass(frozen=True)
class RenderInputs:
    """Everything the report and its figures are drawn from."""

    runs: pd.DataFrame  # metrics/runs.parquet (stage summarise)
    boundary: Boundary | None  # metrics/boundary.json (summarise)
    dynamics: pd.DataFrame | None  # metrics/dynamics.parquet (summarise)
    timing: dict[str, object] | None  # metrics/timing.json (metrics)
    circles: pd.DataFrame  # metrics/circles.parquet (metrics)
    examples: dict[str, pd.DataFrame]  # figure 3's tables of our two runs (mechanism)
    chosen: dict[str, str]  # role (pizza, clock) -> the run_id of ours drawn in figure 3
    paper: PaperInputs
    paper_circles: pd.DataFrame | None  # metrics/paper_circles.parquet (paper_models)
    paper_examples: dict[str, pd.DataFrame] | None  # metrics/paper_examples/ (paper_models)
    paper_scale: PaperScale | None
    neurons: NeuronInputs | None  # stage neurons


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def load_render_inputs(root: str | Path = ".") -> RenderInputs:
    """The render stage's inputs under ``root`` (the repository); a run-less table is refused."""
    root = Path(root)
    m = root / "metrics"
    runs = read_runs_table(m / "runs.parquet")
    if runs.empty:
        raise ValueError(f"{m / 'runs.parquet'}: no runs, nothing to draw")
    examples = {name: read_table(m / "examples" / f"{name}.parquet", schema, "mechanism")
                for name, schema in EXAMPLE_TABLES.items()}
    chosen = dict(examples["correct_logits"].drop_duplicates("role")[["role", "run_id"]].values)
    have_paper = (m / "paper_models.parquet").is_file()
    paper = PaperInputs(
        models=(read_table(m / "paper_models.parquet", PAPER_MODELS_SCHEMA, "summarise")
                if have_paper else None),
        published=(read_published_runs(root / PUBLISHED) if (root / PUBLISHED).is_file()
                   else None),
        published_phases=(_json(m / "published_phases.json")
                          if (m / "published_phases.json").is_file() else None),
        mid_alpha=(read_table(m / "mid_alpha.parquet", MID_ALPHA_SCHEMA, "summarise")
                   if (m / "mid_alpha.parquet").is_file() else None),
    )
    paper_scale = None
    if (m / "paper_scale.json").is_file():
        paper_scale = PaperScale(
            runs=read_table(m / "paper_scale_runs.parquet", PAPER_SCALE_SCHEMA, "summarise"),
            boundary=boundary_from_json(_json(m / "paper_scale_boundary.json")),
            summary=_json(m / "paper_scale.json"))
    return RenderInputs(
        runs=runs, boundary=boundary_from_json(_json(m / "boundary.json")),
        dynamics=(read_table(m / "dynamics.parquet", DYNAMICS_SCHEMA, "summarise")
                  if (m / "dynamics.parquet").is_file() else None),
        timing=load_timing(m / "timing.json"),
        circles=read_table(m / "circles.parquet", CIRCLES_SCHEMA, "metrics"),
        examples=examples, chosen=chosen, paper=paper,
        paper_circles=(read_table(m / "paper_circles.parquet", CIRCLES_SCHEMA, "paper_models")
                       if have_paper else None),
        paper_examples=({name: read_table(m / "paper_examples" / f"{name}.parquet", schema,
                                          "paper_models")
                         for name, schema in EXAMPLE_TABLES.items()} if have_paper else None),
        paper_scale=paper_scale, neurons=load_neuron_inputs(m))


def all_recipes(inputs: RenderInputs, fig1_width: int,
                cfg: NeuronsConfig) -> dict[str, FigureRecipe]:
    """Every figure the inputs have data for, by stem, not yet drawn."""
    figures = figure_recipes(inputs.runs, fig1_width=fig1_width, boundary=inputs.boundary,
                             published=inputs.paper.published, dynamics=inputs.dynamics)
    # Figure 3: ours from the mechanism stage, the authors' from the paper_models stage.
    ex, by_id = inputs.examples, inputs.runs.set_index("run_id")
    for role in ("pizza", "clock"):
        figures[FIG3["ours", role]] = partial(
            example_figure, role, ex["embedding"], ex["correct_logits"], ex["attention"],
            inputs.circles, by_id.loc[inputs.chosen[role]])
    pex = inputs.paper_examples
    if (inputs.paper.models is not None and pex is not None
            and inputs.paper_circles is not None):
        models = inputs.paper.models.set_index("paper_runid")
        for role, runid in PAPER_EXAMPLES.items():
            figures[FIG3["paper", role]] = partial(
                example_figure, role, pex["embedding"], pex["correct_logits"], pex["attention"],
                inputs.paper_circles, models.loc[runid].rename({"paper_runid": "run_id"}))
    if inputs.paper_scale is not None:
        figures |= paper_scale_recipes(inputs.paper_scale.runs, inputs.paper_scale.boundary,
                                       inputs.paper.published)
    if inputs.neurons is not None:
        figures |= neuron_recipes(inputs.neurons, inputs.runs, cfg, inputs.boundary)
    return figures


def report_text(inputs: RenderInputs, paths: dict[str, str], fig1_width: int,
                cfg: NeuronsConfig) -> str:
    """report/README.md; ``paths`` maps each drawn figure's stem to its path from the report."""
    paper_side = (None if inputs.paper.models is None or inputs.paper_circles is None
                  else (inputs.paper.models, inputs.paper_circles))
    ps = inputs.paper_scale
    return build_report(
        inputs.runs, paths, fig1_width, boundary=inputs.boundary, timing=inputs.timing,
        examples=examples_context(inputs.runs, inputs.circles, inputs.chosen, paths,
                                  paper_side),
        paper=inputs.paper, dynamics=inputs.dynamics,
        neurons=(None if inputs.neurons is None
                 else neurons_context(inputs.neurons, inputs.runs, paths, cfg)),
        paper_scale=(None if ps is None else
                     paper_scale_context(ps.runs, ps.summary, paths)))
