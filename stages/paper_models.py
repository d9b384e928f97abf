"""Stage paper_models: the authors' released checkpoints (paper/) measured with this project's
metrics beside their published values -> metrics/paper_models.parquet, and their circles ->
metrics/paper_circles.parquet."""

from clockpizza.analysis.paper_models import paper_tables
from clockpizza.io.cli import run_stage
from clockpizza.io.params import load_params
from clockpizza.io.table import CIRCLES_SCHEMA, PAPER_MODELS_SCHEMA, write_table

CHECKPOINTS, PUBLISHED = "paper/checkpoints", "paper/published_runs_fixed_width.csv"
TABLE, CIRCLES = "metrics/paper_models.parquet", "metrics/paper_circles.parquet"


def main() -> None:
    params = load_params()
    table, circles = paper_tables(CHECKPOINTS, PUBLISHED, params.metrics.n_components,
                                  params.circles, params.phase)
    write_table(TABLE, table, PAPER_MODELS_SCHEMA)
    write_table(CIRCLES, circles, CIRCLES_SCHEMA)
    print(f"[paper_models] {len(table)} released models -> {TABLE}; {len(circles)} circles -> "
          f"{CIRCLES}")


if __name__ == "__main__":
    run_stage("paper_models", main)
