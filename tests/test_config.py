"""params.yaml is validated before any work: every bad value is refused with a message that names
the key and what is allowed."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from clockpizza.io.params import ParamsError, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("data", "model", "train", "metrics", "phase", "render", "boundary", "circles")


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def with_value(raw: dict[str, Any], key: str, value: object) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    *parents, leaf = key.split(".")
    node = out
    for k in parents:
        node = node[k]
    node[leaf] = value
    return out


def without(raw: dict[str, Any], key: str) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    *parents, leaf = key.split(".")
    node = out
    for k in parents:
        node = node[k]
    del node[leaf]
    return out


def refused(raw: object, *fragments: str) -> str:
    with pytest.raises(ParamsError) as info:
        parse_params(raw)
    msg = str(info.value)
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"
    return msg


def test_the_real_params_file_is_accepted(base: dict[str, Any]) -> None:
    params = load_params(ROOT / "params.yaml")
    assert params.attn_rate == tuple(float(a) for a in base["attn_rate"])
    assert params.width == tuple(base["width"])
    assert params.seed == tuple(base["seed"])
    assert params.data.p == base["data"]["p"]
    assert params.train.steps == base["train"]["steps"]
    assert params.model.n_heads == base["model"]["n_heads"]


@pytest.mark.parametrize(("value", "want"), [(0.5, (0.5,)), (0, (0.0,)), (1, (1.0,))])
def test_a_scalar_attention_rate_is_a_one_element_grid(base: dict[str, Any], value: float,
                                                        want: tuple[float, ...]) -> None:
    assert parse_params(with_value(base, "attn_rate", value)).attn_rate == want


@pytest.mark.parametrize("value", [1.5, -0.1, float("nan"), float("inf"), True, "0.5",
                                   [0.0, 0.5, 1.5], [-1e-9, 0.5], [0.2, True]])
def test_attention_rate_outside_unit_interval(base: dict[str, Any], value: object) -> None:
    refused(with_value(base, "attn_rate", value), "attn_rate", "[0.0, 1.0]")


def test_attention_rate_message_points_at_the_bad_element(base: dict[str, Any]) -> None:
    refused(with_value(base, "attn_rate", [0.0, 0.5, 1.5]), "attn_rate[2]", "1.5")


@pytest.mark.parametrize("width", [[30], [32, 30], [0], [-4], [32.0], ["32"]])
def test_width_not_a_positive_multiple_of_heads(base: dict[str, Any], width: list[object]) -> None:
    refused(with_value(base, "width", width), "width", "positive multiple of model.n_heads = 4")


def test_width_follows_n_heads(base: dict[str, Any]) -> None:
    raw = with_value(with_value(base, "model.n_heads", 3), "width", [24, 32])
    refused(raw, "width[1]", "model.n_heads = 3")
    assert parse_params(with_value(raw, "width", [24, 48])).width == (24, 48)


@pytest.mark.parametrize("key", ["attn_rate", "width", "seed"])
def test_empty_grid(base: dict[str, Any], key: str) -> None:
    refused(with_value(base, key, []), key, "empty", "at least one value")


@pytest.mark.parametrize(("key", "value"), [("width", 32), ("seed", 0), ("width", None)])
def test_width_and_seed_must_be_lists(base: dict[str, Any], key: str, value: object) -> None:
    refused(with_value(base, key, value), key, "must be a list")


@pytest.mark.parametrize("key", ["attn_rate", "width", "seed"])
def test_duplicate_grid_values(base: dict[str, Any], key: str) -> None:
    value = {"attn_rate": [0.5, 0.5], "width": [32, 32], "seed": [1, 1]}[key]
    refused(with_value(base, key, value), key, "duplicates")


@pytest.mark.parametrize("seed", [[-1], [0, 1.5]])
def test_seed_must_be_a_non_negative_integer(base: dict[str, Any], seed: list[object]) -> None:
    refused(with_value(base, "seed", seed), "seed", "integer >= 0")


@pytest.mark.parametrize("p", [2, 3.5, "59", True, None])
def test_p_must_be_an_integer_of_at_least_3(base: dict[str, Any], p: object) -> None:
    refused(with_value(base, "data.p", p), "data.p", "an integer >= 3")


@pytest.mark.parametrize("frac", [0, 1, 1.5, -0.2, 0.0, 1.0])
def test_train_frac_outside_open_unit_interval(base: dict[str, Any], frac: float) -> None:
    refused(with_value(base, "data.train_frac", frac), "data.train_frac", "(0.0, 1.0)")


def test_train_frac_that_leaves_a_split_empty(base: dict[str, Any]) -> None:
    # p = 3: round(0.99 * 9) = 9 pairs for training and none for testing.
    raw = with_value(with_value(base, "data.p", 3), "data.train_frac", 0.99)
    refused(raw, "data.train_frac", "non-empty")


@pytest.mark.parametrize("steps", [0, -5, 2.5, "100"])
def test_steps_must_be_at_least_one(base: dict[str, Any], steps: object) -> None:
    refused(with_value(base, "train.steps", steps), "train.steps", "integer >= 1")


@pytest.mark.parametrize(("key", "value", "allowed"), [
    ("model.act", "tanh", "relu, gelu"),
    ("model.n_layers", 5, "1 to 4"),
    ("model.n_layers", 0, "1 to 4"),
    ("train.precision", "fp16", "fp32, tf32, bf16"),
    ("train.device", "gpu", "auto, cpu, cuda"),
    ("train.lr", 0, "(0.0, 10.0]"),
    ("train.beta2", 1.0, "[0.0, 1.0)"),
    ("phase.pizza_min_gs", 1.2, "[0.0, 1.0]"),
    ("render.fig1_width", 0, "positive integer"),
    ("boundary.n_boot", -1, "integer >= 0"),
    ("boundary.boot_seed", 0.5, "integer >= 0"),
    ("phase.circle_majority", 0.5, "(0.5, 1.0]"),
    ("phase.circle_majority", 1.1, "(0.5, 1.0]"),
    ("circles.max_circles", 0, "integer >= 1"),
    ("circles.max_circles", 2.5, "integer >= 1"),
    ("circles.min_var_share", 1.0, "[0.0, 1.0)"),
    ("circles.min_fve", -1.5, "[-1.0, 1.0]"),
    ("circles.type_from", "rho2", "paper, centred"),
    ("render.clock_run_id", "abc", "run id (12 hex digits"),
    ("render.pizza_run_id", 12, "run id (12 hex digits"),
])
def test_other_bad_values(base: dict[str, Any], key: str, value: object, allowed: str) -> None:
    refused(with_value(base, key, value), key, allowed)


def test_example_run_ids_may_be_given(base: dict[str, Any]) -> None:
    raw = with_value(base, "render.clock_run_id", "0123456789ab")
    assert parse_params(raw).render.clock_run_id == "0123456789ab"
    assert parse_params(raw).render.pizza_run_id is None


@pytest.mark.parametrize(("key", "a_real_key"), [
    ("train.stpes", "steps"), ("data.p_mod", "train_frac"), ("model.nlayers", "n_layers"),
    ("metrics.x", "gs_triples"), ("phase.x", "pizza_max_di"), ("render.x", "fig1_width"),
    ("boundary.x", "n_boot"),
    ("circles.max_circle", "max_circles"),
])
def test_unknown_key_in_a_section(base: dict[str, Any], key: str, a_real_key: str) -> None:
    # The message names the typo and lists the keys that section does allow.
    refused(with_value(base, key, 1), key, "unknown key", a_real_key)


@pytest.mark.parametrize("key", ["attn_rates", "Width", "training"])
def test_unknown_top_level_key(base: dict[str, Any], key: str) -> None:
    refused(with_value(base, key, [1]), key, "unknown top-level key", "attn_rate")


@pytest.mark.parametrize("section", SECTIONS)
def test_missing_section(base: dict[str, Any], section: str) -> None:
    refused(without(base, section), section, "missing")


@pytest.mark.parametrize("key", ["attn_rate", "width", "seed"])
def test_missing_grid_axis(base: dict[str, Any], key: str) -> None:
    refused(without(base, key), key, "missing")


@pytest.mark.parametrize("key", ["train.lr", "data.split_seed", "phase.min_test_acc",
                                 "phase.circle_majority", "circles.min_fve",
                                 "render.pizza_run_id"])
def test_missing_key_in_a_section(base: dict[str, Any], key: str) -> None:
    refused(without(base, key), key, "missing")


@pytest.mark.parametrize("raw", [None, [], "attn_rate: 1"])
def test_top_level_must_be_a_mapping(raw: object) -> None:
    refused(raw, "top level must be a mapping")


def test_load_params_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(ParamsError, match=r"nowhere\.yaml"):
        load_params(missing)
    broken = tmp_path / "params.yaml"
    broken.write_text("attn_rate: [0.0, 1.0\nwidth: [32]\n")
    with pytest.raises(ParamsError, match=r"params\.yaml: not valid YAML"):
        load_params(broken)


@pytest.mark.parametrize("cmd", [["stages/train.py", "--width", "32", "--seed", "0"],
                                 ["stages/dataset.py"]], ids=["train", "dataset"])
def test_a_stage_refuses_bad_params_before_any_work(base: dict[str, Any], tmp_path: Path,
                                                     cmd: list[str]) -> None:
    raw = with_value(base, "attn_rate", [0.0, 1.5])
    raw["width"], raw["seed"] = [32], [0]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / cmd[0]), *cmd[1:]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "attn_rate[1] = 1.5" in proc.stderr
    assert "[0.0, 1.0]" in proc.stderr
    assert "Traceback" not in proc.stderr  # one clear line, not a stack trace
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # no data/, no runs/


@pytest.mark.parametrize("section", [None, "train"])
def test_unknown_keys_of_mixed_types(base: dict[str, Any], section: str | None) -> None:
    # YAML reads a key like `1:` or `0.5:` as a number; two typos, one of them numeric.
    raw = copy.deepcopy(base)
    node = raw if section is None else raw[section]
    node[1] = 2
    node["stpes"] = 3
    # After a fix either typo may be the one named; both messages say "unknown".
    refused(raw, "unknown", *([] if section is None else ["train."]))


def test_the_readme_params_reference_is_the_schemas() -> None:
    # The README's reference table is exactly the one generated from the schema and
    # params.yaml, so it names every key, its default and what is allowed.
    from clockpizza.io.params import reference_table, schema_keys

    readme = (ROOT / "README.md").read_text()
    start, end = "<!-- params-reference:start -->\n", "<!-- params-reference:end -->"
    shown = readme[readme.index(start) + len(start):readme.index(end)]
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert shown == reference_table(raw), "regenerate it: python -m clockpizza.io.params"
    assert all(f"| `{k}` |" in shown for k in schema_keys())


def test_flushing_subnormals_is_a_flag_and_optional(base: dict[str, Any]) -> None:
    refused(with_value(base, "train.flush_denormals", "yes"), "train.flush_denormals",
            "true or false")
    # params files written before the key existed (results/*/params.yaml) still parse, as the
    # arithmetic they were trained with
    assert parse_params(without(base, "train.flush_denormals")).train.flush_denormals is False
