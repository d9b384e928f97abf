"""The whole grid in one call: per-run reuse, the Ray backend, a killed worker, a missing Ray."""

from __future__ import annotations

import builtins
import copy
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

from clockpizza.io.params import Params, parse_params
from clockpizza.science.data import make_dataset
from clockpizza.science.grid import grid_specs, run_dir, train_grid

ROOT = Path(__file__).resolve().parents[1]
P = 11


def params(**changes: Any) -> Params:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw |= {"attn_rate": [0.0, 1.0], "width": [8], "seed": [0]}
    raw["data"] |= {"p": P}
    raw["train"] |= {"steps": 30, "eval_every": 10, "device": "cpu", "snapshots": [0, 20]}
    raw["mlp_family"] = {"models": [], "width": 8}
    for key, value in changes.items():
        node = raw
        *parents, leaf = key.split(".")
        for k in parents:
            node = node[k]
        node[leaf] = copy.deepcopy(value)
    return parse_params(raw)


@pytest.fixture(scope="module")
def dataset() -> pd.DataFrame:
    return make_dataset(P, 0.8, 0)


def files(root: Path) -> dict[str, object]:
    """Every run file's content, config.json aside (it records wall times): bytes, and for
    weights each tensor's bytes and the metadata (safetensors writes metadata keys in hash
    order, so the same content can be different bytes)."""
    out: dict[str, object] = {}
    for f in sorted(root.rglob("*")):
        if not f.is_file() or f.name == "config.json":
            continue
        if f.suffix == ".safetensors":
            with safe_open(str(f), "pt") as st:
                out[str(f.relative_to(root))] = (
                    st.metadata(), {k: st.get_tensor(k).numpy().tobytes() for k in st.keys()})  # noqa: SIM118
        else:
            out[str(f.relative_to(root))] = f.read_bytes()
    return out


def test_adding_a_rate_trains_only_the_new_run_with_the_bits_of_training_it_in_its_group(
        tmp_path: Path, dataset: pd.DataFrame) -> None:
    # A chunk's size can change a model's last bits (the batched matmul rounds differently with
    # the batch size): measured on the 2-core dev machine, bit for bit at p 59, widths 32 and 64,
    # but max |dW| 6e-8 after 30 steps at width 8, p 11 (growing with training, as AdamW
    # amplifies rounding). So the added run is compared with the same run trained in its group
    # to float32 rounding over a few steps.
    first = train_grid(params(width=[32]), dataset, tmp_path / "grown", checkpoints=tmp_path / "c")
    assert (len(first.trained), len(first.reused)) == (2, 0)
    before = files(tmp_path / "grown")
    grown = params(attn_rate=[0.0, 0.5, 1.0], width=[32])
    out = train_grid(grown, dataset, tmp_path / "grown", checkpoints=tmp_path / "c")
    new = run_dir(tmp_path / "grown", grown_spec := grid_specs(grown)[1])
    assert grown_spec.attn_rate == 0.5
    assert out.trained == [new] and len(out.reused) == 2
    after = files(tmp_path / "grown")
    assert {k: v for k, v in after.items() if k in before} == before  # old runs untouched
    # The same three rates trained together from nothing: the added run is bit for bit the
    # same (its initial weights come from the seed alone; the batch shares no arithmetic).
    together = train_grid(grown, dataset, tmp_path / "together", checkpoints=tmp_path / "c")
    assert len(together.trained) == 3
    for spec in grid_specs(grown):
        got, want = (load_file(str(run_dir(tmp_path / d, spec) / "model.safetensors"))
                     for d in ("grown", "together"))
        assert got.keys() == want.keys()
        for k in got:
            torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-5)
    # Removing a rate trains nothing and leaves every directory in place.
    out = train_grid(params(attn_rate=[1.0], width=[32]), dataset, tmp_path / "grown",
                     checkpoints=tmp_path / "c")
    assert (len(out.trained), len(out.reused)) == (0, 1)
    assert files(tmp_path / "grown") == after


def test_a_damaged_or_differently_recorded_run_is_trained_again(
        tmp_path: Path, dataset: pd.DataFrame) -> None:
    p = params()
    train_grid(p, dataset, tmp_path, checkpoints=tmp_path / "c")
    a, b = (run_dir(tmp_path, s) for s in grid_specs(p))
    weights = (a / "model.safetensors").read_bytes()
    (a / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    (b / "snapshots" / "step_000020.safetensors").unlink()
    out = train_grid(p, dataset, tmp_path, checkpoints=tmp_path / "c")
    assert sorted(out.trained) == sorted([a, b]) and not out.reused
    assert (a / "model.safetensors").read_bytes() == weights
    # train.eval_every is not in the run id, but the history follows it: retrained.
    out = train_grid(params(**{"train.eval_every": 15}), dataset, tmp_path,
                     checkpoints=tmp_path / "c")
    assert len(out.trained) == 2
    assert pd.read_parquet(a / "history.parquet").step.tolist() == [0, 15, 20, 30]


def test_ray_backend_without_ray_is_one_line_naming_the_key_before_any_work(
        tmp_path: Path, dataset: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_ray(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(RuntimeError) as err:
        train_grid(params(**{"train.backend": "ray"}), dataset, tmp_path / "runs")
    msg = str(err.value)
    assert "\n" not in msg and "train.backend = ray" in msg and "pip install -e '.[ray]'" in msg
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written


def test_ray_needs_gpus_for_cuda() -> None:
    from clockpizza.io.params import ParamsError

    with pytest.raises(ParamsError, match=r"train\.ray_gpus_per_task"):
        params(**{"train.backend": "ray", "train.device": "cuda"})


# ---------------------------------------------------------------------------------------------
# Ray: a local cluster of two single-CPU workers


@pytest.fixture(scope="module")
def ray_cluster() -> Any:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def _two_groups(**changes: Any) -> Params:
    return params(width=[8, 12], **{"mlp_family.models": ["A"], **changes})


@pytest.mark.slow
def test_ray_gives_the_runs_of_the_local_backend_bit_for_bit(
        tmp_path: Path, dataset: pd.DataFrame, ray_cluster: Any) -> None:
    local = train_grid(_two_groups(), dataset, tmp_path / "local", checkpoints=tmp_path / "c")
    seen: list[int] = []
    on_ray = train_grid(_two_groups(**{"train.backend": "ray"}), dataset, tmp_path / "ray",
                        on_progress=seen.append)
    assert len(on_ray.trained) == len(local.trained) == 5
    assert files(tmp_path / "ray") == files(tmp_path / "local")
    assert seen and seen[-1] == 5 * 30  # one count over the whole grid, to the end


def _kill_one_training_worker(stop: threading.Event, killed: list[int]) -> None:
    """Kill the first Ray worker seen running a chunk (its process title is the task's)."""
    while not stop.is_set() and not killed:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"ray::train_chunk"):
                time.sleep(1.0)  # mid-task: it has started training
                os.kill(int(pid), signal.SIGKILL)
                killed.append(int(pid))
                return
        time.sleep(0.05)


@pytest.mark.slow
def test_a_worker_killed_mid_task_is_retried_and_the_grid_is_the_same(
        tmp_path: Path, dataset: pd.DataFrame, ray_cluster: Any) -> None:
    longer = {"train.steps": 300, "train.eval_every": 100}
    train_grid(_two_groups(**longer), dataset, tmp_path / "local", checkpoints=tmp_path / "c")
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_one_training_worker, args=(stop, killed))
    killer.start()
    try:
        out = train_grid(_two_groups(**longer, **{"train.backend": "ray"}), dataset,
                         tmp_path / "ray")
    finally:
        stop.set()
        killer.join()
    assert killed, "no training worker was seen to kill"
    assert len(out.trained) == 5
    assert files(tmp_path / "ray") == files(tmp_path / "local")


# ---------------------------------------------------------------------------------------------
# End to end: `dvc exp run -S train.backend=ray` against the default backend


@pytest.mark.slow
def test_dvc_exp_run_on_ray_gives_the_runs_table_of_the_local_backend(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from tests.test_pipeline import copy_repo, run, set_params

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    tables = {}
    for backend in ("local", "ray"):  # each in a fresh copy: no runs to reuse, no cache
        repo = copy_repo(tmp_path / backend)
        set_params(repo, attn_rate=[0.0, 1.0], width=[8, 12], seed=[0], train__steps=40,
                   train__eval_every=20, train__snapshots=[0, 40])
        run([*git, "commit", "-qam", "tiny"], repo)
        # Up to the runs table, which summarise writes (the figures are not what differs).
        cmd = ["dvc", "exp", "run", "summarise"]
        out = run(cmd + (["-S", "train.backend=ray"] if backend == "ray" else []), repo)
        assert "[train] 4 trained, 0 reused" in out.stdout, out.stdout
        assert json.loads((repo / "metrics/train.json").read_text())["backend"] == backend
        tables[backend] = pd.read_parquet(repo / "metrics/runs.parquet")
    assert len(tables["local"]) == 4
    # Every column bit for bit: run ids, final losses and accuracies, every metric.
    pd.testing.assert_frame_equal(tables["ray"], tables["local"], check_exact=True)
