"""Runs on disk: written whole, read back exactly, and every damaged run named by its path."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml

from clockpizza.analysis.collect import collect_tables
from clockpizza.io.params import Params, parse_params
from clockpizza.io.store import RunError, write_run
from clockpizza.science.data import make_dataset
from clockpizza.science.grid import train_and_save
from clockpizza.science.model import TransformerConfig, init_params
from clockpizza.science.runs import expected_runs, run_config
from clockpizza.science.runs import read_spec_run as read_run
from clockpizza.science.spec import RunSpec, group_specs

ROOT = Path(__file__).resolve().parents[1]


def small_params(**grid: object) -> Params:
    raw: dict[str, Any] = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw |= {"attn_rate": [0.0, 1.0], "width": [8], "seed": [0]} | grid
    raw["data"]["p"] = 7
    raw["train"]["device"] = "cpu"
    raw["train"]["steps"] = 3
    return parse_params(raw)


def spec(**changes: object) -> RunSpec:
    base = RunSpec(attn_rate=0.5, d_model=8, n_layers=1, n_heads=4, act="relu", p=7,
                   train_frac=0.8, split_seed=0, init_seed=0, steps=3, lr=1e-3,
                   weight_decay=2.0, beta1=0.9, beta2=0.98, eps=1e-8, warmup_steps=10,
                   precision="fp32")
    return dataclasses.replace(base, **changes)


def tcfg(s: RunSpec) -> TransformerConfig:
    return TransformerConfig(d_vocab=s.p, n_ctx=2, d_model=s.d_model, n_heads=s.n_heads,
                             n_layers=s.n_layers, act=s.act)


def history() -> pd.DataFrame:
    return pd.DataFrame({"step": [0, 3], "train_loss": [2.0, 1.5], "test_loss": [2.1, 1.9],
                         "train_acc": [0.1, 0.3], "test_acc": [0.0, 0.2]})


def save(run_dir: Path, s: RunSpec, width: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    weights = init_params(tcfg(s), s.init_seed)
    config = run_config(s, tcfg(s), width=width, seed=seed, device="cpu", eval_every=3)
    write_run(run_dir, weights, config, history())
    return weights


# ---------------------------------------------------------------------------------------------
# Round trip


def test_a_written_run_reads_back_exactly(tmp_path: Path) -> None:
    s = spec()
    run_dir = tmp_path / "w8-s0" / s.run_id
    weights = save(run_dir, s)
    run = read_run(run_dir, tcfg(s), s.run_id)
    assert run.path == run_dir
    assert set(run.weights) == set(weights)
    for k, v in weights.items():
        assert torch.equal(run.weights[k], v), k
    for k, v in dataclasses.asdict(s).items():
        assert run.config[k] == v, k
    assert run.config["run_id"] == s.run_id
    assert run.config["device"] == "cpu"
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "history.parquet"), history())
    # The weights are plain safetensors under the TransformerLens names, readable without us.
    from safetensors.torch import load_file

    assert "blocks.0.attn.W_Q" in load_file(str(run_dir / "model.safetensors"))


def test_write_run_leaves_no_partial_directory_and_overwrites(tmp_path: Path) -> None:
    s = spec()
    run_dir = tmp_path / "w8-s0" / s.run_id
    save(run_dir, s)
    (run_dir / "stray.txt").write_text("from an older run")
    save(run_dir, dataclasses.replace(s, init_seed=1))
    assert sorted(p.name for p in run_dir.parent.iterdir()) == [s.run_id]
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "config.json", "history.parquet", "model.safetensors"]
    assert run_dir.joinpath("config.json").read_text().count('"init_seed": 1') == 1


# ---------------------------------------------------------------------------------------------
# Damaged runs


def damage_missing_dir(run_dir: Path) -> Path:
    for f in run_dir.iterdir():
        f.unlink()
    run_dir.rmdir()
    return run_dir


def damage_missing_file(run_dir: Path) -> Path:
    (run_dir / "history.parquet").unlink()
    return run_dir / "history.parquet"


def _truncate(path: Path) -> Path:
    """Cut the file in half, as a kill mid-write would without atomic writes."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def damage_truncated_weights(run_dir: Path) -> Path:
    return _truncate(run_dir / "model.safetensors")


def damage_truncated_config(run_dir: Path) -> Path:
    return _truncate(run_dir / "config.json")


def damage_binary_config(run_dir: Path) -> Path:
    path = run_dir / "config.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    return path


def damage_other_run_id(run_dir: Path) -> Path:
    path = run_dir / "config.json"
    config = json.loads(path.read_text())
    config["run_id"] = "0123456789ab"
    path.write_text(json.dumps(config))
    return path


def damage_truncated_history(run_dir: Path) -> Path:
    return _truncate(run_dir / "history.parquet")


DAMAGES = [damage_missing_dir, damage_missing_file, damage_truncated_weights,
           damage_truncated_config, damage_binary_config, damage_other_run_id,
           damage_truncated_history]


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda f: f.__name__.removeprefix("damage_"))
def test_a_damaged_run_is_refused_naming_the_path(tmp_path: Path, damage: Any) -> None:
    s = spec()
    run_dir = tmp_path / "w8-s0" / s.run_id
    save(run_dir, s)
    bad = damage(run_dir)
    with pytest.raises(RunError) as info:
        read_run(run_dir, tcfg(s), s.run_id)
    assert str(bad) in str(info.value)


def test_weights_of_another_shape_are_refused(tmp_path: Path) -> None:
    s = spec()
    run_dir = tmp_path / s.run_id
    save(run_dir, s)
    with pytest.raises(RunError, match=r"model\.safetensors"):
        read_run(run_dir, tcfg(dataclasses.replace(s, d_model=16)), s.run_id)


def test_collect_runs_reports_every_broken_run_at_once(tmp_path: Path) -> None:
    params = small_params(attn_rate=[0.0, 0.5, 1.0], width=[8, 12])
    dataset = make_dataset(params.data.p, params.data.train_frac, params.data.split_seed)
    runs_root = tmp_path / "runs"
    dirs = [d for _, group in expected_runs(params, runs_root) for d in group]
    specs = [s for w in params.width for sd in params.seed for s in group_specs(params, w, sd)]
    assert len(dirs) == len(specs) == 6
    for d, s in zip(dirs, specs, strict=True):
        save(d, s, width=s.d_model, seed=s.init_seed)
    broken = [damage_missing_dir(dirs[0]), damage_truncated_weights(dirs[2]),
              damage_other_run_id(dirs[4]), damage_truncated_config(dirs[5])]
    with pytest.raises(RuntimeError) as info:
        collect_tables(params, runs_root, dataset, torch.device("cpu"))
    msg = str(info.value)
    for path in broken:
        assert str(path) in msg
    for whole in (dirs[1], dirs[3]):
        assert str(whole) not in msg


def test_collect_runs_of_whole_runs_gives_one_row_per_run(tmp_path: Path) -> None:
    params = small_params()
    dataset = make_dataset(params.data.p, params.data.train_frac, params.data.split_seed)
    specs = group_specs(params, 8, 0)
    for d, s in zip(expected_runs(params, tmp_path)[0][1], specs, strict=True):
        save(d, s)
    runs = collect_tables(params, tmp_path, dataset, torch.device("cpu")).runs
    assert runs["run_id"].tolist() == [s.run_id for s in specs]
    assert runs["attn_rate"].tolist() == [0.0, 1.0]
    assert runs[["gradient_symmetricity", "distance_irrelevance", "circularity"]].notna().all(
        axis=None)


# ---------------------------------------------------------------------------------------------
# Run ids


def test_run_id_is_a_hash_of_the_config() -> None:
    s = spec()
    assert spec().run_id == s.run_id  # a fresh, equal spec: same id (not random)
    assert len(s.run_id) == 12 and all(c in "0123456789abcdef" for c in s.run_id)
    changed = {"attn_rate": 0.25, "d_model": 16, "n_layers": 2, "n_heads": 2, "act": "gelu",
               "p": 11, "train_frac": 0.7, "split_seed": 1, "init_seed": 1, "steps": 4,
               "lr": 2e-3, "weight_decay": 1.0, "beta1": 0.8, "beta2": 0.99, "eps": 1e-7,
               "warmup_steps": 0, "precision": "tf32", "diff_vocab": True, "eqn_sign": True,
               "family": "A", "init_per_run": True, "split_per_run": True, "engine": "fast",
               "flush_denormals": True}
    assert set(changed) == {f.name for f in dataclasses.fields(RunSpec)}
    ids = {s.run_id}
    for field, value in changed.items():
        other = dataclasses.replace(s, **{field: value})
        assert other.run_id != s.run_id, field
        ids.add(other.run_id)
    assert len(ids) == len(changed) + 1


def test_group_runs_differ_only_in_attention_rate() -> None:
    params = small_params(attn_rate=[0.0, 0.5, 1.0])
    specs = group_specs(params, 8, 0)
    assert [s.attn_rate for s in specs] == [0.0, 0.5, 1.0]
    assert len({s.run_id for s in specs}) == 3
    assert len({s.group_key for s in specs}) == 1
    assert group_specs(params, 8, 0)[1].run_id == specs[1].run_id


def test_atomically_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    import os

    from clockpizza.io.table import write_text

    path = tmp_path / "report.md"
    write_text(path, "x")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_diverging_run_is_flagged_and_does_not_break_the_table(tmp_path: Path) -> None:
    # A learning rate far too high (inside the allowed range) makes the losses blow up: the
    # metrics stage still writes its table, names such runs diverged and labels them
    # non-circular, and measures the others as usual.
    params = small_params(attn_rate=[0.0, 1.0])
    params = dataclasses.replace(params, train=dataclasses.replace(
        params.train, lr=10.0, warmup_steps=0, steps=40, eval_every=10))
    dataset = make_dataset(params.data.p, params.data.train_frac, params.data.split_seed)
    train_and_save(params, 8, 0, dataset, tmp_path / "runs", checkpoints=tmp_path / "ckpt")
    runs = collect_tables(params, tmp_path / "runs", dataset, torch.device("cpu")).runs
    assert runs["diverged"].any()
    bad = runs[runs["diverged"]]
    assert (bad["phase"] == "non-circular").all()
    assert bad["diverged_step"].between(0, 40).all()  # the step it blew up at, in the run
    assert (runs.loc[~runs["diverged"], "diverged_step"] == -1).all()
    good = runs[~runs["diverged"]]
    assert good["gradient_symmetricity"].notna().all()
