"""Stage render: figures and report/README.md from the tables of the other stages alone (and the
paper's published runs, in git): clockpizza.figures.render reads them, draws and writes; no
result is fitted or labelled here. A figure whose inputs did not change since it was last drawn
is copied from .cache/figures (clockpizza.figures.cache), not drawn again."""

import sys
from pathlib import Path

# This checkout's package (the code dvc.yaml hashes), even where another clone is pip-installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clockpizza.figures.cache import EXTS, cache_dir, save_figures
from clockpizza.figures.paper_scale import PS_FIGURES
from clockpizza.figures.plots_neurons import NEURON_FIGURES
from clockpizza.figures.render import all_recipes, load_render_inputs, report_text
from clockpizza.figures.report import ALL_FIGURES
from clockpizza.io.cli import run_stage
from clockpizza.io.params import load_params
from clockpizza.io.table import write_text

FIGURES, REPORT = "report/figures", "report/README.md"


def main() -> None:
    params = load_params()
    inputs = load_render_inputs(".")
    figures = all_recipes(inputs, params.render.fig1_width, params.neurons)
    # only the figures whose tables changed are drawn; the others' bytes come from the cache
    drawn = save_figures(figures, FIGURES, cache_dir())
    # a figure whose data left the tables goes too
    for stem in sorted({*ALL_FIGURES, *PS_FIGURES, *NEURON_FIGURES} - set(figures)):
        for ext in EXTS:
            Path(FIGURES, stem + ext).unlink(missing_ok=True)
    paths = {stem: f"figures/{stem}.png" for stem in figures}
    write_text(REPORT, report_text(inputs, paths, params.render.fig1_width, params.neurons))
    print(f"[render] {len(figures)} figures -> {FIGURES}/, report -> {REPORT}; drawn: "
          f"{', '.join(drawn) or 'none'} ({len(figures) - len(drawn)} unchanged, from the cache)")


if __name__ == "__main__":
    run_stage("render", main)
