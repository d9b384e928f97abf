"""Stage paper_models: the authors' released checkpoints (paper/) measured with this project's
metrics beside their published values -> metrics/paper_measured.parquet (no phase: the
summarise stage labels it into metrics/paper_models.parquet), and their circles ->
metrics/paper_circles.parquet, and the figure-3 tables of the authors' Model A (pizza) and
Model B (clock) -> metrics/paper_examples/."""

import sys
from pathlib import Path

# This checkout's package (the code dvc.yaml hashes), even where another clone is pip-installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clockpizza.analysis.paper_models import paper_examples, paper_tables
from clockpizza.io.cli import run_stage
from clockpizza.io.params import load_params
from clockpizza.io.table import CIRCLES_SCHEMA, EXAMPLE_TABLES, PAPER_MEASURED_SCHEMA, write_table

CHECKPOINTS, PUBLISHED = "paper/checkpoints", "paper/published_runs_fixed_width.csv"
TABLE, CIRCLES = "metrics/paper_measured.parquet", "metrics/paper_circles.parquet"
EXAMPLES = "metrics/paper_examples"  # figure 3's tables of the authors' Model A and Model B


def main() -> None:
    params = load_params()
    table, circles = paper_tables(CHECKPOINTS, PUBLISHED, params.metrics.n_components,
                                  params.circles)
    write_table(TABLE, table, PAPER_MEASURED_SCHEMA)
    write_table(CIRCLES, circles, CIRCLES_SCHEMA)
    examples = paper_examples(CHECKPOINTS, 2 * params.circles.max_circles)
    for name, schema in EXAMPLE_TABLES.items():
        write_table(f"{EXAMPLES}/{name}.parquet", examples[name], schema)
    print(f"[paper_models] {len(table)} released models -> {TABLE}; {len(circles)} circles -> "
          f"{CIRCLES}")


if __name__ == "__main__":
    run_stage("paper_models", main)
