"""Stage check: the whole params.yaml validated, first of all (dvc.yaml: every stage depends on
its stamp), and against this machine (a CUDA device, Ray and its cluster, the memory one model
needs). DVC removes a stage's outputs just before running it, in pipeline order, so a value
refused here stops `dvc repro` / `dvc exp run` before any output is removed."""

import sys
from pathlib import Path

# This checkout's package (the code dvc.yaml hashes), even where another clone is pip-installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clockpizza.io.cli import run_stage
from clockpizza.io.params import load_params
from clockpizza.io.table import write_text
from clockpizza.science.machine_check import check_machine
from clockpizza.science.spec import engine_note

# The same bytes on every success, so the stages downstream rerun only for their own params.
STAMP = "metrics/params_checked.txt"


def main() -> None:
    params = load_params()
    check_machine(params)
    note = engine_note(params)
    if note:
        print(f"[check] {note}")
    write_text(STAMP, "params.yaml passed the params check (clockpizza.io.params)\n")
    print(f"[check] params.yaml is valid -> {STAMP}")


if __name__ == "__main__":
    run_stage("check", main)
