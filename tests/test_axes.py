"""The grid axes of issue #5: n_layers, act, diff_vocab, eqn_sign and the attention-free family.

Validation of every new key, the run ids of the default grid, the trainer on a mixed list of
combinations, the runs table they give, and (slow) a real `dvc repro` with the new axes.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from test_pipeline import copy_repo, run, set_params

from clockpizza.analysis.collect import collect_tables
from clockpizza.analysis.metrics import gradient_symmetricity, gs_triples
from clockpizza.io.params import PRESET_TARGETS, Params, ParamsError, load_params, parse_params
from clockpizza.io.table import RUNS_SCHEMA, read_runs_table, write_runs_table
from clockpizza.results.selection import main_runs
from clockpizza.science.data import encode, make_dataset
from clockpizza.science.grid import train_and_save, train_grid
from clockpizza.science.model import BatchedTransformer, TransformerConfig, stack
from clockpizza.science.spec import RunSpec, grid_groups, group_specs, mlp_spec, shape_groups
from clockpizza.science.train import SplitTensors, train_group

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def edit(raw: dict[str, Any], key: str, value: object = ...) -> dict[str, Any]:
    """A deep copy with ``key`` (dotted) set to ``value``, or deleted when no value is given."""
    out = copy.deepcopy(raw)
    *parents, leaf = key.split(".")
    node = out
    for k in parents:
        node = node[k]
    if value is ...:
        del node[leaf]
    else:
        node[leaf] = value
    return out


def refused(raw: object, *fragments: str) -> None:
    with pytest.raises(ParamsError) as info:
        parse_params(raw)
    for f in fragments:
        assert f in str(info.value), f"{f!r} not in {str(info.value)!r}"


# ---------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(("key", "value", "want"), [
    ("model.n_layers", 2, (2,)),
    ("model.n_layers", [1, 2, 3, 4], (1, 2, 3, 4)),
    ("model.act", "gelu", ("gelu",)),
    ("model.act", ["relu", "gelu"], ("relu", "gelu")),
    ("data.diff_vocab", True, (True,)),
    ("data.diff_vocab", [False, True], (False, True)),
    ("data.eqn_sign", [True], (True,)),
    ("mlp_family.models", [], ()),
    ("mlp_family.models", ["A", "B", "C", "D", "X"], ("A", "B", "C", "D", "X")),
    ("mlp_family.width", 2, 2),
])
def test_new_keys_accept_a_value_or_a_list(base: dict[str, Any], key: str, value: object,
                                           want: object) -> None:
    params = parse_params(edit(base, key, value))
    section, leaf = key.split(".")
    assert getattr(getattr(params, section), leaf) == want


def test_the_default_is_the_laptop_run(base: dict[str, Any]) -> None:
    params = load_params(ROOT / "params.yaml")
    assert params.model.n_layers == (1,) and params.model.act == ("relu",)
    assert params.data.diff_vocab == (False,) and params.data.eqn_sign == (False,)
    assert params.mlp_family.models == ()


@pytest.mark.parametrize(("key", "value", "fragments"), [
    ("model.n_layers", 5, ["model.n_layers = 5", "1 to 4"]),
    ("model.n_layers", [1, 5], ["model.n_layers[1] = 5", "1 to 4"]),
    ("model.n_layers", [0], ["model.n_layers[0] = 0", "1 to 4"]),
    ("model.n_layers", True, ["model.n_layers = True", "1 to 4"]),
    ("model.n_layers", "2", ["model.n_layers = '2'", "1 to 4"]),
    ("model.n_layers", 2.0, ["model.n_layers = 2.0", "1 to 4"]),
    ("model.n_layers", [], ["model.n_layers = []", "empty"]),
    ("model.n_layers", [2, 2], ["model.n_layers", "duplicates"]),
    ("model.act", "tanh", ["model.act = 'tanh'", "relu, gelu"]),
    ("model.act", ["relu", "tanh"], ["model.act[1] = 'tanh'", "relu, gelu"]),
    ("model.act", None, ["model.act = None", "relu, gelu"]),
    ("model.act", [], ["model.act = []", "empty"]),
    ("model.act", ["gelu", "gelu"], ["model.act", "duplicates"]),
    ("data.diff_vocab", 1, ["data.diff_vocab = 1", "true or false"]),
    ("data.diff_vocab", "true", ["data.diff_vocab = 'true'", "true or false"]),
    ("data.diff_vocab", None, ["data.diff_vocab = None", "true or false"]),
    ("data.diff_vocab", [False, 0], ["data.diff_vocab[1] = 0", "true or false"]),
    ("data.diff_vocab", [], ["data.diff_vocab = []", "empty"]),
    ("data.diff_vocab", [True, True], ["data.diff_vocab", "duplicates"]),
    ("data.eqn_sign", "no", ["data.eqn_sign = 'no'", "true or false"]),
    ("data.eqn_sign", [True, 1], ["data.eqn_sign[1] = 1", "true or false"]),
    ("data.eqn_sign", [], ["data.eqn_sign = []", "empty"]),
    ("data.eqn_sign", [False, False], ["data.eqn_sign", "duplicates"]),
    ("mlp_family.models", "A", ["mlp_family.models = 'A'", "must be a list"]),
    ("mlp_family.models", None, ["mlp_family.models = None", "must be a list"]),
    ("mlp_family.models", ["A", "E"], ["mlp_family.models[1] = 'E'", "A, B, C, D, X"]),
    ("mlp_family.models", ["a"], ["mlp_family.models[0] = 'a'", "A, B, C, D, X"]),
    ("mlp_family.models", ["X", "X"], ["mlp_family.models", "duplicates"]),
    ("mlp_family.width", 255, ["mlp_family.width = 255", "positive even integer"]),
    ("mlp_family.width", 0, ["mlp_family.width = 0", "positive even integer"]),
    ("mlp_family.width", -2, ["mlp_family.width = -2", "positive even integer"]),
    ("mlp_family.width", 256.0, ["mlp_family.width = 256.0", "positive even integer"]),
    ("mlp_family.width", True, ["mlp_family.width = True", "positive even integer"]),
    ("mlp_family.width", [256], ["mlp_family.width = [256]", "positive even integer"]),
    ("mlp_family.widht", 256, ["mlp_family.widht", "unknown key", "width"]),
    ("data.diffvocab", True, ["data.diffvocab", "unknown key", "diff_vocab"]),
    ("presets.fig1.n_layers", 5, ["presets.fig1.n_layers = 5", "1 to 4"]),
    ("presets.layers.n_layers", [], ["presets.layers.n_layers = []", "empty"]),
    ("presets.layers.act", "gelu", ["presets.layers.act", "unknown key", "n_layers"]),
])
def test_new_keys_refuse_bad_values(base: dict[str, Any], key: str, value: object,
                                    fragments: list[str]) -> None:
    refused(edit(base, key, value), *fragments)


@pytest.mark.parametrize("key", ["mlp_family", "mlp_family.models", "mlp_family.width",
                                 "data.diff_vocab", "data.eqn_sign", "presets.fig2.n_layers"])
def test_new_keys_are_required(base: dict[str, Any], key: str) -> None:
    refused(edit(base, key), key, "missing")


def test_preset_script_copies_exactly_the_preset_keys() -> None:
    script = (ROOT / "scripts/preset.sh").read_text()
    copied = dict(re.findall(r'-S "([\w.]+)=\\\$\{presets\.\$name\.(\w+)\}"', script))
    assert {v: k for k, v in copied.items()} == PRESET_TARGETS


# ---------------------------------------------------------------------------------------------
# Run ids and the grid


def test_runs_of_the_default_grid_keep_their_ids(base: dict[str, Any]) -> None:
    # The id of a run that uses none of the new settings is the hash of the settings that existed
    # before them, so results trained before this change keep their ids (and their cache).
    params = parse_params(base)
    old = {f.name for f in dataclasses.fields(RunSpec)} - {"diff_vocab", "eqn_sign", "family",
                                                           "init_per_run", "split_per_run"}
    for _, specs in grid_groups(params):
        for s in specs:
            blob = json.dumps({k: v for k, v in dataclasses.asdict(s).items() if k in old},
                              sort_keys=True, separators=(",", ":"))
            assert s.run_id == hashlib.sha256(blob.encode()).hexdigest()[:12]
    # Pinned: the id this spec had before the new fields existed.
    s = RunSpec(attn_rate=0.5, d_model=64, n_layers=2, n_heads=4, act="gelu", p=59,
                train_frac=0.8, split_seed=0, init_seed=1, steps=2000, lr=1e-3,
                weight_decay=2.0, beta1=0.9, beta2=0.98, eps=1e-8, warmup_steps=10,
                precision="fp32")
    assert s.run_id == "c850715a87c7"
    ids = {s.run_id} | {dataclasses.replace(s, **{k: v}).run_id for k, v in
                        (("diff_vocab", True), ("eqn_sign", True), ("family", "A"),
                                         ("init_per_run", True), ("split_per_run", True))}
    assert len(ids) == 6


def test_a_train_instance_holds_every_combination_in_shape_groups(base: dict[str, Any]) -> None:
    raw = edit(edit(edit(edit(base, "model.n_layers", [1, 2]), "model.act", ["relu", "gelu"]),
                    "data.diff_vocab", [False, True]), "data.eqn_sign", [False, True])
    raw["attn_rate"] = [0.0, 0.5, 1.0]
    params = parse_params(raw)
    specs = group_specs(params, 32, 0)
    assert len(specs) == 2 * 2 * 2 * 2 * 3 and len({s.run_id for s in specs}) == len(specs)
    groups = shape_groups(specs)
    assert len(groups) == 16
    for g in groups:
        assert [s.attn_rate for s in g] == [0.0, 0.5, 1.0]
        assert len({(s.n_layers, s.act, s.diff_vocab, s.eqn_sign) for s in g}) == 1
    assert {(s.d_model, s.init_seed, s.family) for s in specs} == {(32, 0, "transformer")}


def test_the_grid_lists_transformer_instances_then_the_family(base: dict[str, Any]) -> None:
    raw = edit(edit(base, "mlp_family.models", ["X", "A"]), "mlp_family.width", 64)
    raw["width"], raw["seed"] = [32], [0, 1]
    names = [name for name, _ in grid_groups(parse_params(raw))]
    assert names == ["w32-s0", "w32-s1", "mlp-X-s0", "mlp-X-s1", "mlp-A-s0", "mlp-A-s1"]
    s = mlp_spec(parse_params(raw), "X", 1)
    assert (s.attn_rate, s.d_model, s.n_layers, s.n_heads, s.family, s.init_seed) == (
        None, 64, 0, 0, "X", 1)
    assert s.group == "mlp-X-s1"


# ---------------------------------------------------------------------------------------------
# Metrics with the ablations


def test_gs_with_both_ablations_differentiates_the_rows_looked_up(one_thread: None) -> None:
    # diff_vocab: operand b is token b + p, so GS compares the gradients at W_E[a] and
    # W_E[b + p]; the '=' token (last id) is not part of it. Brute force: the gradient with
    # respect to the whole W_E, read at those rows (they never coincide).
    p, d = 7, 8
    cfg = TransformerConfig(d_vocab=2 * p + 1, n_ctx=3, d_model=d, n_heads=2, n_layers=2)
    model = BatchedTransformer.from_seeds(cfg, [0, 1], [0.3, 1.0]).double()
    triples = gs_triples(p, 12, 5)
    got = gradient_symmetricity(model, p, triples, diff_vocab=True, eqn_sign=True)
    for m in range(2):
        alone = BatchedTransformer(cfg, stack([model.model_params(m)]),
                                   [[0.3, 1.0][m]]).double()
        cos = []
        for a, b, c in triples.tolist():
            tokens = encode(torch.tensor([a]), torch.tensor([b]), p, diff_vocab=True,
                            eqn_sign=True)
            assert tokens.tolist() == [[a, b + p, 2 * p]]
            (grad,) = torch.autograd.grad(alone(tokens)[0, 0, c], alone.embed.W_E)
            cos.append(torch.cosine_similarity(grad[0, a], grad[0, b + p], dim=0))
        assert got[m].item() == pytest.approx(torch.stack(cos).mean().item(), abs=1e-10)


# ---------------------------------------------------------------------------------------------
# Training a mixed grid and the runs table it gives


def tiny(base: dict[str, Any], **changes: object) -> Params:
    raw = copy.deepcopy(base)
    raw |= {"attn_rate": [0.0, 1.0], "width": [8], "seed": [0]}
    raw["data"] |= {"p": 11, "diff_vocab": [False, True], "eqn_sign": True}
    raw["model"] |= {"n_layers": [1, 2], "act": ["relu", "gelu"]}
    raw["train"] |= {"steps": 20, "eval_every": 10, "device": "cpu"}
    raw["mlp_family"] = {"models": ["A", "B", "C", "D", "X"], "width": 8}
    for key, value in changes.items():
        raw = edit(raw, key, value)
    return parse_params(raw)


@pytest.fixture(scope="module")
def trained(base: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[Params, Path, pd.DataFrame]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        params = tiny(base)
        root = tmp_path_factory.mktemp("runs")
        dataset = make_dataset(params.data.p, params.data.train_frac, params.data.split_seed)
        train_and_save(params, 8, 0, dataset, root)
        train_grid(params, dataset, root,
                   [mlp_spec(params, model, 0) for model in params.mlp_family.models])
        return params, root, dataset
    finally:
        torch.set_num_threads(n)


def test_each_run_is_written_with_its_shape(trained: tuple[Params, Path, pd.DataFrame]) -> None:
    params, root, _ = trained
    p = params.data.p
    for name, specs in grid_groups(params):
        for s in specs:
            config = json.loads((root / name / s.run_id / "config.json").read_text())
            assert config["run_id"] == s.run_id and config["family"] == s.family
            if s.family == "transformer":
                assert config["d_vocab"] == (2 * p if s.diff_vocab else p) + int(s.eqn_sign)
                assert config["n_ctx"] == 2 + int(s.eqn_sign)
            else:
                assert config["attn_rate"] is None and config["d_vocab"] == p
            history = pd.read_parquet(root / name / s.run_id / "history.parquet")
            assert history["step"].tolist() == [0, 10, 20]
            assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0], s


def test_a_shape_trained_among_others_is_that_shape_trained_alone(
        trained: tuple[Params, Path, pd.DataFrame], one_thread: None) -> None:
    # Catches a group trained on another group's token encoding or model shape.
    from safetensors.torch import load_file

    params, root, dataset = trained
    specs = [s for s in group_specs(params, 8, 0)
             if (s.n_layers, s.act, s.diff_vocab) == (2, "gelu", True)]
    data = SplitTensors.from_table(dataset, params.data.p, torch.device("cpu"), diff_vocab=True,
                                   eqn_sign=True)
    alone = train_group(specs, data, torch.device("cpu"), eval_every=10)
    for i, s in enumerate(specs):
        stored = load_file(str(root / "w8-s0" / s.run_id / "model.safetensors"))
        for k, v in alone.model.model_params(i).items():
            torch.testing.assert_close(stored[k], v, atol=1e-5, rtol=0)


def test_runs_table_has_one_row_per_grid_point(trained: tuple[Params, Path, pd.DataFrame],
                                               tmp_path: Path, one_thread: None) -> None:
    params, root, dataset = trained
    runs = collect_tables(params, root, dataset, torch.device("cpu")).runs
    write_runs_table(tmp_path / "runs.parquet", runs)
    table = pq.read_table(tmp_path / "runs.parquet")
    assert table.schema.field("family").type == pa.string()
    assert table.schema.field("diff_vocab").type == pa.bool_()
    assert table.schema.field("attn_rate").type == pa.float64()
    assert table.schema.names == RUNS_SCHEMA.names
    runs = read_runs_table(tmp_path / "runs.parquet")
    tf, mlp = runs[runs.family == "transformer"], runs[runs.family != "transformer"]
    want = {(n, act, dv, True, a) for n in (1, 2) for act in ("relu", "gelu")
            for dv in (False, True) for a in (0.0, 1.0)}
    got = set(zip(tf.n_layers, tf.act, tf.diff_vocab, tf.eqn_sign, tf.attn_rate, strict=True))
    assert got == want and len(tf) == len(want)
    assert sorted(mlp.family) == ["A", "B", "C", "D", "X"]
    assert mlp.attn_rate.isna().all() and tf.attn_rate.notna().all()
    assert (mlp.n_heads == 0).all() and (mlp.n_layers == 0).all() and (mlp.width == 8).all()
    assert not mlp.diff_vocab.any() and not mlp.eqn_sign.any()
    assert runs.run_id.is_unique
    metrics = ["gradient_symmetricity", "distance_irrelevance", "circularity", "test_acc"]
    assert runs[metrics].notna().all(axis=None)
    # A's output depends on E[a] + E[b] alone, trained or not: its GS is 1.
    assert mlp.set_index("family").gradient_symmetricity["A"] == pytest.approx(1.0, abs=1e-6)
    # The main figures see the paper's setting only (one layer, ReLU, no ablation): every
    # run here has the '=' token, so they are all appendix material.
    assert main_runs(runs).empty
    plain = main_runs(runs.assign(eqn_sign=False))
    assert set(zip(plain.n_layers, plain.act, plain.diff_vocab, strict=True)) == {
        (1, "relu", False)}
    assert sorted(plain.attn_rate) == [0.0, 1.0]


def test_runs_table_follows_the_params_not_the_directory(
        base: dict[str, Any], trained: tuple[Params, Path, pd.DataFrame],
        one_thread: None) -> None:
    _, root, dataset = trained
    fewer = tiny(base, **{"mlp_family.models": ["D"], "model.n_layers": 2,
                          "model.act": "relu"})
    runs = collect_tables(fewer, root, dataset, torch.device("cpu")).runs
    assert sorted(runs.family) == ["D", *["transformer"] * 4]
    assert set(runs.n_layers[runs.family == "transformer"]) == {2}


# ---------------------------------------------------------------------------------------------
# End to end


@pytest.mark.slow
def test_dvc_repro_with_the_new_axes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # tiny models: threads only contend
    repo = copy_repo(tmp_path)
    set_params(repo, attn_rate=[0.0, 1.0], width=[16], seed=[0], train__steps=30,
               train__eval_every=10)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["model"]["n_layers"] = [1, 2]
    params["data"]["eqn_sign"] = [False, True]
    params["mlp_family"] = {"models": ["A", "X"], "width": 16}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro"], repo).stdout
    for stage in ("train", "metrics", "render"):
        assert f"Running stage '{stage}'" in out
    assert "[train] 10 trained, 0 reused" in out  # 8 transformers and A and X, in one stage
    runs = pd.read_parquet(repo / "metrics/runs.parquet")
    tf = runs[runs.family == "transformer"]
    assert set(zip(tf.n_layers, tf.eqn_sign, tf.attn_rate, strict=True)) == {
        (n, e, a) for n in (1, 2) for e in (False, True) for a in (0.0, 1.0)}
    assert len(tf) == 8
    mlp = runs[runs.family != "transformer"].set_index("family")
    assert sorted(mlp.index) == ["A", "X"] and mlp.attn_rate.isna().all()
    assert all(math.isfinite(v) for v in mlp.gradient_symmetricity)
    for row in runs.itertuples():
        group = "w16-s0" if row.family == "transformer" else f"mlp-{row.family}-s0"
        assert (repo / "runs" / group / row.run_id / "model.safetensors").is_file()
    assert (repo / "report/figures/fig2_phase_diagram.png").is_file()
    # Dropping the family trains nothing, and the table follows params even though the old
    # run directories are still on disk.
    params["mlp_family"]["models"] = []
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro"], repo).stdout
    assert "[train] 0 trained, 8 reused" in out
    assert (repo / "runs" / "mlp-A-s0").is_dir()
    runs = pd.read_parquet(repo / "metrics/runs.parquet")
    assert len(runs) == 8 and set(runs.family) == {"transformer"}
