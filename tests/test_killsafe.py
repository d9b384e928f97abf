"""A `dvc repro` killed mid-way keeps every run written; the chunk in flight resumes on rerun."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.test_pipeline import _env, copy_repo, run, set_params

pytestmark = pytest.mark.slow


def test_sigkill_mid_grid_then_rerun(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path)
    # Two groups; checkpoints at every evaluation so the group in flight has one to resume.
    set_params(repo, attn_rate=[0.0, 1.0], width=[8, 12], seed=[0], train__steps=1000,
               train__eval_every=100, train__checkpoint_minutes=0)
    proc = subprocess.Popen(["dvc", "repro"], cwd=repo, env=_env(repo), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ckpts = repo / ".checkpoints"
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            first_done = (repo / "runs" / "w8-s0").is_dir() and len(
                [d for d in (repo / "runs" / "w8-s0").iterdir() if d.is_dir()
                 and not d.name.endswith(".partial")]) == 2
            if first_done and ckpts.exists() and any(ckpts.glob("w12-s0-*.pt")):
                break
            assert proc.poll() is None, f"dvc repro ended early:\n{proc.stdout.read()}"
            time.sleep(0.2)
        else:
            pytest.fail("the second group never started checkpointing")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    rerun = run(["dvc", "repro"], repo)
    assert "[train] 2 trained, 2 reused" in rerun.stdout  # the finished group's runs: kept
    assert "resumed 2 models from the checkpoint at step" in rerun.stderr + rerun.stdout
    runs = pd.read_parquet(repo / "metrics/runs.parquet")
    assert len(runs) == 4 and set(runs.width) == {8, 12}
    assert not list(ckpts.glob("*.pt")), "checkpoints are removed once the group is written"
