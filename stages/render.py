"""Stage render: figures and report/README.md from the metrics tables alone."""

from pathlib import Path

from clockpizza.figures.example_plots import example_figure
from clockpizza.figures.plots import save
from clockpizza.figures.report import FIGURES as STEMS
from clockpizza.figures.report import build_report, draw_figures, examples_section, load_timing
from clockpizza.io.cli import run_stage
from clockpizza.io.params import load_params
from clockpizza.io.table import (
    CIRCLES_SCHEMA,
    EXAMPLE_TABLES,
    read_runs_table,
    read_table,
    write_text,
)

TABLE, FIGURES, REPORT = "metrics/runs.parquet", "report/figures", "report/README.md"
CIRCLES, EXAMPLES = "metrics/circles.parquet", "metrics/examples"
# The training wall time recorded by the metrics stage (clockpizza.figures.report.load_timing).
TIMING = "metrics/timing.json"


def main() -> None:
    params = load_params()
    runs = read_runs_table(TABLE)
    if runs.empty:
        raise ValueError(f"{TABLE}: no runs, nothing to draw")
    fit = {"n_boot": params.boundary.n_boot, "boot_seed": params.boundary.boot_seed}
    figures = draw_figures(runs, fig1_width=params.render.fig1_width, **fit)

    circles = read_table(CIRCLES, CIRCLES_SCHEMA, "metrics")
    ex = {name: read_table(f"{EXAMPLES}/{name}.parquet", schema, "mechanism")
          for name, schema in EXAMPLE_TABLES.items()}
    chosen = dict(ex["correct_logits"].drop_duplicates("role")[["role", "run_id"]].values)
    by_id = runs.set_index("run_id")
    for role, stem in (("clock", "fig3_model_a_clock"), ("pizza", "fig3_model_b_pizza")):
        figures[stem] = example_figure(role, ex["embedding"], ex["correct_logits"],
                                       ex["attention"], circles, by_id.loc[chosen[role]])
    for stem, fig in figures.items():
        save(fig, f"{FIGURES}/{stem}")
    for stem in set(STEMS) - set(figures):  # a figure whose data left the table goes too
        for ext in (".png", ".svg"):
            Path(FIGURES, stem + ext).unlink(missing_ok=True)
    paths = {stem: f"figures/{stem}.png" for stem in figures}
    examples = examples_section(runs, circles, chosen,
                                {"clock": paths["fig3_model_a_clock"],
                                 "pizza": paths["fig3_model_b_pizza"]})
    write_text(REPORT, build_report(runs, paths, params.render.fig1_width, **fit,
                                    timing=load_timing(TIMING), examples=examples))
    print(f"[render] {len(figures)} figures -> {FIGURES}/, report -> {REPORT}")


if __name__ == "__main__":
    run_stage("render", main)
