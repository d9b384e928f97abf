"""Stage train: every run of the grid that is not already whole, on train.backend.

The transformers (one batch per shape: model.n_layers × model.act × data.diff_vocab ×
data.eqn_sign, all attention rates at once) and the attention-free family, in memory-sized
chunks, in this process (backend local) or as Ray tasks (backend ray). A run whose directory is
already whole is reused, whatever list it came from; the count goes to metrics/train.json.
"""

import sys
from pathlib import Path

# This checkout's package (the code dvc.yaml hashes), even where another clone is pip-installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm import tqdm

from clockpizza.io.cli import run_stage
from clockpizza.io.params import ParamsError, changed_keys, load_params
from clockpizza.io.table import write_json
from clockpizza.science.data import load_dataset
from clockpizza.science.grid import GridPlan, train_grid

DATASET, RUNS, REPORT = "data/dataset.parquet", "runs", "metrics/train.json"
# The stage's params in dvc.yaml. DVC records their values when the stage ends: an edit made while
# it trained would be recorded as trained, and every later `dvc repro` would skip this stage.
PARAMS = ("attn_rate", "width", "seed", "data", "model", "train", "mlp_family")


def main() -> None:
    params = load_params()
    if params.train.backend == "ray":  # before any work: a missing Ray is one line
        from clockpizza.science.distributed import require_ray

        require_ray()
    dataset = load_dataset(DATASET, params.data.p)
    bar: list[tqdm] = []

    def opened(plan: GridPlan) -> None:
        print(f"[train] {plan.n_runs} runs to train in {len(plan.jobs)} chunks "
              f"({params.train.backend}), {len(plan.reused)} already whole", flush=True)
        bar.append(tqdm(total=plan.model_steps, unit="model-step", unit_scale=True,
                        smoothing=0.1, desc=f"train {plan.n_runs} models"))

    def progress(model_steps: int) -> None:
        bar[0].update(model_steps - bar[0].n)

    try:
        out = train_grid(params, dataset, RUNS, on_plan=opened, on_progress=progress)
    finally:
        for b in bar:
            b.close()
    changed = changed_keys(params, load_params(), PARAMS)
    if changed:
        raise ParamsError(f"params.yaml changed while the train stage ran ({', '.join(changed)}); "
                          "the runs trained are those of the values it read at its start. "
                          "Rerun `dvc repro`: it trains the new values, reusing every run "
                          "already whole")
    write_json(REPORT, {"trained": len(out.trained), "reused": len(out.reused),
                        "backend": out.backend})
    print(f"[train] {len(out.trained)} trained, {len(out.reused)} reused -> {RUNS}/")


if __name__ == "__main__":
    run_stage("train", main)
