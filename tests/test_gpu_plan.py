"""The GPU run's parts, on the CPU: the preflight, the engine check, the precision rule with its
noise floor, and (slow) the whole plan of scripts/gpu_check.sh as a dry run."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest
import torch

from clockpizza.science.spec import RunSpec
from clockpizza.tools import cuda_check, precision, preflight

REPO = Path(__file__).resolve().parents[1]


def test_the_preflight_names_a_missing_module_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert preflight.main([]) == 0
    assert "torch=" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "pydantic", None)  # as on a machine without it
    assert preflight.main([]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing: pydantic" in err[0]


def test_the_engine_check_passes_on_the_cpu(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    assert cuda_check.main(["--device", "cpu", "--p", "23", "--width", "16",
                            "--json", str(tmp_path / "c.json")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all(line.endswith(" ok") for line in lines)
    assert {"float64", "float32"} <= {r.dtype for r in cuda_check.check(torch.device("cpu"),
                                                                          23, 16)}


def test_the_engine_check_catches_a_wrong_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    class Off(cuda_check.FastStep):
        def __call__(self, keep_logits: bool = False) -> torch.Tensor | None:
            out = super().__call__(keep_logits)
            grad = self.model.unembed.W_U.grad
            assert grad is not None
            grad.mul_(1 + 1e-6)  # a millionth off: far above float64 rounding
            return out

    monkeypatch.setattr(cuda_check, "FastStep", Off)
    rows = cuda_check.check(torch.device("cpu"), 23, 16)
    bad = [r for r in rows if not r.ok]
    assert [(r.dtype, r.engine, r.worst) for r in bad] == [("float64", "fast", "unembed.W_U")]
    assert cuda_check.main(["--device", "cpu", "--p", "23", "--width", "16"]) == 1


def _table(phases: list[str], gs: list[float]) -> pd.DataFrame:
    n = len(phases)
    return pd.DataFrame({
        "family": "transformer", "attn_rate": [i / (n - 1) for i in range(n)], "width": 128,
        "seed": 0, "n_layers": 1, "act": "relu", "diff_vocab": False, "eqn_sign": False,
        "steps": 20000, "phase": phases, "gradient_symmetricity": gs,
        "distance_irrelevance": 0.5})


def test_a_precision_qualifies_against_the_fp32_noise_floor_not_against_zero() -> None:
    ref = _table(["pizza", "pizza", "clock", "clock"], [0.99, 0.98, 0.50, 0.40])
    again = _table(["pizza", "clock", "clock", "clock"], [0.99, 0.90, 0.50, 0.40])  # one flip
    one_flip = _table(["pizza", "pizza", "pizza", "clock"], [0.99, 0.98, 0.45, 0.40])
    two_flips = _table(["clock", "pizza", "pizza", "clock"], [0.99, 0.98, 0.50, 0.40])
    assert precision.compare(ref, one_flip)["acceptable"] is False, "the old rule: no flip"
    q = precision.qualify(ref, one_flip, again)
    assert (q["flips"], q["noise_flips"], q["qualifies"]) == (1, 1, True)
    assert precision.qualify(ref, two_flips, again)["qualifies"] is False
    moved = _table(["pizza", "pizza", "clock", "clock"], [0.99, 0.98, 0.30, 0.40])
    assert precision.qualify(ref, moved, again)["qualifies"] is False, "0.2 > fp32's 0.08"
    # only the runs all three share count: the repeat may be a subset
    assert precision.qualify(ref, one_flip, again.iloc[[0, 3]])["n_runs"] == 2


def test_a_reduced_precision_run_starts_from_its_fp32_twin() -> None:
    fp32 = RunSpec(attn_rate=0.3, d_model=16, n_layers=1, n_heads=4, act="relu", p=23,
                   train_frac=0.8, split_seed=0, init_seed=0, steps=20, lr=1e-3,
                   weight_decay=2.0, beta1=0.9, beta2=0.98, eps=1e-8, warmup_steps=10,
                   precision="fp32", init_per_run=True, split_per_run=True, engine="fast")
    tf32 = dataclasses.replace(fp32, precision="tf32")
    assert tf32.run_id != fp32.run_id, "another run"
    assert (tf32.weights_seed, tf32.data_split_seed) == (fp32.weights_seed,
                                                         fp32.data_split_seed)
    other = dataclasses.replace(fp32, attn_rate=0.4)
    assert other.weights_seed != fp32.weights_seed, "each run still its own weights"


@pytest.mark.slow  # the six steps on tiny grids: ~2.5 minutes on 2 loaded cores
def test_the_gpu_plan_dry_runs_on_the_cpu_and_packs_every_step(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = os.environ | {"GPU_CHECK_WORK": str(tmp_path / "work"),
                        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "scripts/gpu_check.sh", str(out), "--dry-run"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    archives = sorted(p.name for p in out.glob("*.tar.gz"))
    assert archives == ["a-preflight.tar.gz", "b-fig1-s0-fp32.tar.gz", "c-precision.tar.gz",
                        "d-fig2-lite.tar.gz", "e-fig1-s12.tar.gz", "f-bench.tar.gz"]
    assert len(list(out.iterdir())) <= 8, "at most 8 files come back from a command"

    def names(archive: str) -> set[str]:
        with tarfile.open(out / archive) as tar:
            return set(tar.getnames())

    assert {"a-preflight/preflight.json", "a-preflight/cuda_check.json"} <= names(
        "a-preflight.tar.gz")
    assert "b-fig1-s0-fp32/runs.parquet" in names("b-fig1-s0-fp32.tar.gz")
    assert not any("/runs/" in n or n.endswith(".safetensors")
                   for a in archives for n in names(a)), "no weights in the archives"
    # on a CPU TF32 is fp32, bit for bit: it qualifies, and the later grids train in it
    with tarfile.open(out / "c-precision.tar.gz") as tar:
        md = tar.extractfile("c-precision.md")
        assert md is not None
        assert md.read().decode().strip().endswith("qualified: tf32")
    assert "d-fig2-lite-tf32/runs.parquet" in names("d-fig2-lite.tar.gz")
    assert "e-fig1-s12-tf32/provenance.parquet" in names("e-fig1-s12.tar.gz")
    assert "f-bench/bench.jsonl" in names("f-bench.tar.gz")
    assert (out / "log.txt").read_text().rstrip().endswith("done")
