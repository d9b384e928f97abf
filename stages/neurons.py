"""Stage neurons: the first-layer neurons of every transformer of the grid (the simple-neuron
fit), their frequency clusters (disc / torus) and a summary per run -> metrics/neurons.parquet,
metrics/neuron_clusters.parquet, metrics/neuron_runs.parquet; the same for the authors' released
models -> metrics/paper_neurons.parquet, metrics/paper_neuron_clusters.parquet,
metrics/paper_neuron_runs.parquet."""

from clockpizza.analysis.neurons import collect_neurons, paper_neuron_tables
from clockpizza.io.cli import run_stage
from clockpizza.io.params import load_params
from clockpizza.io.table import NEURON_TABLES, write_table

RUNS, CHECKPOINTS = "runs", "paper/checkpoints"


def main() -> None:
    params = load_params()
    for prefix, tables in (("metrics/", collect_neurons(params, RUNS)),
                           ("metrics/paper_", paper_neuron_tables(CHECKPOINTS, params.neurons))):
        for (name, schema), table in zip(NEURON_TABLES.items(), tables, strict=True):
            write_table(f"{prefix}{name}.parquet", table, schema)
        print(f"[neurons] {len(tables[2])} models, {len(tables[0])} neurons, {len(tables[1])} "
              f"clusters -> {prefix}neuron*.parquet")


if __name__ == "__main__":
    run_stage("neurons", main)
