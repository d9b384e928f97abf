"""Stage mechanism: the data of the Model A (pizza) / Model B (clock) figures, read from the
weights of the two example runs -> metrics/examples/{embedding,correct_logits,attention}.parquet."""

import sys
from pathlib import Path

# This checkout's package (the code dvc.yaml hashes), even where another clone is pip-installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clockpizza.analysis.mechanism import collect_examples
from clockpizza.io.cli import run_stage
from clockpizza.io.params import load_params
from clockpizza.io.table import EXAMPLE_TABLES, read_runs_table, write_table

TABLE, RUNS, OUT = "metrics/runs.parquet", "runs", "metrics/examples"


def main() -> None:
    params = load_params()
    tables = collect_examples(params, read_runs_table(TABLE), RUNS)
    for name, schema in EXAMPLE_TABLES.items():
        write_table(f"{OUT}/{name}.parquet", tables[name], schema)
    roles = tables["correct_logits"].drop_duplicates("role")
    print("[mechanism] " + ", ".join(f"{r.role} example: run {r.run_id}"
                                      for r in roles.itertuples()) + f" -> {OUT}/")


if __name__ == "__main__":
    run_stage("mechanism", main)
