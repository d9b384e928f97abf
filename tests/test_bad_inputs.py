"""Values a later stage would refuse are refused by the check stage, before DVC removes any output,
in one line naming the key; and the quieter faults: a misspelt key, a number YAML reads as text,
a float for an integer, a snapshot beyond the last step, a params.yaml edited while the train stage
runs, a broken run directory, Ctrl-C, safetensors bytes, the checkout's own package."""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
import torch
import yaml

from clockpizza.io import cli
from clockpizza.io.params import Params, ParamsError, parse_params
from clockpizza.io.store import WEIGHTS, write_run
from clockpizza.science import machine_check
from clockpizza.science.architectures import model_config, param_shapes
from clockpizza.science.grid import is_whole
from clockpizza.science.machine_check import check_example_runs, check_machine, check_memory
from clockpizza.science.spec import RunSpec, grid_groups

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def changed(raw: dict[str, Any], **changes: object) -> dict[str, Any]:
    """``train__lr=0.1`` sets train.lr; ``seed=[1]`` a top-level key."""
    out = copy.deepcopy(raw)
    for key, value in changes.items():
        *parents, leaf = key.split("__")
        node = out
        for k in parents:
            node = node[k]
        node[leaf] = value
    return out


def refusal(raw: object) -> str:
    with pytest.raises(ParamsError) as info:
        parse_params(raw)
    return str(info.value)


# ------------------------------------------------------------------------------------------
# Misspelt keys, numbers YAML reads as text, floats for integers.


@pytest.mark.parametrize("section, wrong, right", [
    ("train", "wieght_decay", "weight_decay"), ("model", "n_head", "n_heads"),
    ("circles", "max_circle", "max_circles"), ("data", "train_fraction", "train_frac"),
    (None, "widths", "width"), (None, "attn_rates", "attn_rate")])
def test_a_misspelt_key_is_named_with_the_key_meant(base: dict[str, Any], section: str | None,
                                                   wrong: str, right: str) -> None:
    raw = copy.deepcopy(base)
    node = raw[section] if section else raw
    node[wrong] = node.pop(right)
    msg = refusal(raw)
    where = f"{section}." if section else ""
    assert msg.startswith(f"{where}{wrong}: unknown "), msg
    assert f"did you mean {where}{right}?" in msg, msg


def test_an_unknown_key_like_no_other_gets_no_guess(base: dict[str, Any]) -> None:
    msg = refusal(changed(base, train__colour=1))
    assert "train.colour: unknown key" in msg and "did you mean" not in msg, msg


@pytest.mark.parametrize("line", ["lr: 2e-3", "lr: 5E-4", "eps: 1e-8", "weight_decay: 1.0e0",
                                  "lr: -3e-3"])
def test_a_number_yaml_reads_as_text_gets_a_spelling_yaml_reads_as_a_number(
        base: dict[str, Any], line: str) -> None:
    key, text = (s.strip() for s in line.split(":"))
    raw = changed(base, **{f"train__{key}": yaml.safe_load(f"x: {text}")["x"]})
    msg = refusal(raw)
    assert msg.startswith(f"train.{key} = {text!r}"), msg
    suggested = msg.rsplit("write ", 1)[1].rstrip(")")
    value = yaml.safe_load(f"x: {suggested}")["x"]  # what the user would then write
    assert isinstance(value, float) and value == float(text), (suggested, value)


@pytest.mark.parametrize("key, value", [("train__steps", 30.0), ("train__eval_every", 100.0),
                                        ("data__p", 59.0), ("metrics__gs_triples", 1e2)])
def test_a_float_where_an_integer_is_needed_is_refused_with_the_integer(
        base: dict[str, Any], key: str, value: float) -> None:
    msg = refusal(changed(base, **{key: value}))
    assert f"{key.replace('__', '.')} = {value!r}" in msg, msg
    assert f"write {int(value)}, without the decimal point" in msg, msg


def test_a_fractional_float_for_an_integer_gets_no_integer_suggested(
        base: dict[str, Any]) -> None:
    msg = refusal(changed(base, train__steps=30.5))
    assert "train.steps = 30.5" in msg and "write" not in msg, msg


# ------------------------------------------------------------------------------------------
# Integer ranges, snapshots, example runs, triples.


@pytest.mark.parametrize("key, value, named", [
    ("seed", [0, 2**64], "seed[1]"), ("seed", [2**63], "seed[0]"),
    ("data__split_seed", 2**70, "data.split_seed"), ("metrics__gs_seed", 2**63, "metrics.gs_seed"),
    ("boundary__boot_seed", 10**30, "boundary.boot_seed"),
    ("train__steps", 2**64 + 5, "train.steps")])
def test_integers_beyond_64_bits_are_refused_by_key(base: dict[str, Any], key: str,
                                                    value: object, named: str) -> None:
    msg = refusal(changed(base, **{key: value}))
    assert msg.startswith(named), msg
    assert str(2**63 - 1) in msg, msg


def test_the_largest_seed_accepted_is_one_torch_and_the_tables_take(base: dict[str, Any]) -> None:
    params = parse_params(changed(base, seed=[2**63 - 1]))
    torch.Generator().manual_seed(params.seed[0])
    pa.array([params.seed[0]], pa.int64())  # the runs table's seed column
    with pytest.raises((RuntimeError, ValueError)):
        torch.Generator().manual_seed(2**64)
    with pytest.raises(OverflowError):
        pa.array([2**63], pa.int64())


@pytest.mark.parametrize("snapshots, steps, bad", [([0, 100, 5000], 4000, 2), ([4001], 4000, 0),
                                                   ([0, 21], 20, 1)])
def test_a_snapshot_beyond_the_last_step_is_refused(base: dict[str, Any], snapshots: list[int],
                                                    steps: int, bad: int) -> None:
    msg = refusal(changed(base, train__snapshots=snapshots, train__steps=steps))
    assert msg.startswith(f"train.snapshots[{bad}] = {snapshots[bad]}"), msg
    assert f"train.steps = {steps}" in msg, msg


def test_a_snapshot_at_the_last_step_is_kept(base: dict[str, Any]) -> None:
    params = parse_params(changed(base, train__snapshots=[0, 20], train__steps=20))
    assert params.train.snapshot_steps == (0, 20)


def example_refusal(raw: dict[str, Any]) -> str:
    with pytest.raises(ParamsError) as info:
        check_example_runs(parse_params(raw))
    return str(info.value)


@pytest.mark.parametrize("role", ["clock", "pizza"])
def test_an_example_run_id_not_in_the_grid_is_refused(base: dict[str, Any], role: str) -> None:
    msg = example_refusal(changed(base, **{f"render__{role}_run_id": "0123456789ab"}))
    assert msg.startswith(f"render.{role}_run_id = '0123456789ab': not a transformer run"), msg


def test_an_example_run_id_of_the_grid_is_accepted_and_one_of_another_grid_is_not(
        base: dict[str, Any]) -> None:
    small = changed(base, attn_rate=[0.0, 1.0], width=[32], seed=[3])
    ids = [s.run_id for _, specs in grid_groups(parse_params(small)) for s in specs]
    check_example_runs(parse_params(changed(small, render__clock_run_id=ids[1],
                                            render__pizza_run_id=ids[0])))
    msg = example_refusal(changed(small, seed=[4], render__clock_run_id=ids[1]))
    assert "render.clock_run_id" in msg, msg


def test_an_attention_free_run_is_no_example(base: dict[str, Any]) -> None:
    raw = changed(base, mlp_family__models=["A"])
    mlp = [s.run_id for _, specs in grid_groups(parse_params(raw)) for s in specs
           if s.family == "A"]
    assert "render.pizza_run_id" in example_refusal(changed(raw, render__pizza_run_id=mlp[0]))


@pytest.mark.parametrize("p, triples", [(3, 100), (5, 126), (7, 344)])
def test_more_gs_triples_than_p_cubed_are_refused(base: dict[str, Any], p: int,
                                                 triples: int) -> None:
    msg = refusal(changed(base, data__p=p, metrics__gs_triples=triples))
    assert msg.startswith(f"metrics.gs_triples = {triples}") and str(p**3) in msg, msg
    parse_params(changed(base, data__p=p, metrics__gs_triples=p**3))  # all of them: fine


# ------------------------------------------------------------------------------------------
# Against this machine: CUDA, Ray, memory.


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_cuda_device_is_refused(base: dict[str, Any]) -> None:
    with pytest.raises(ParamsError, match=r"^train\.device = 'cuda': .*allowed here: auto or cpu"):
        check_machine(parse_params(changed(base, train__device="cuda")))
    check_machine(parse_params(changed(base, train__device="auto")))


def test_ray_that_is_not_installed_is_refused(base: dict[str, Any],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(machine_check.importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(ParamsError, match=r"^train\.backend = 'ray': Ray is not installed"):
        check_machine(parse_params(changed(base, train__backend="ray")))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once it is closed


@pytest.mark.parametrize("form", ["ray://127.0.0.1:{port}", "127.0.0.1:{port}",
                                  "ray://localhost:{port}"])
def test_a_ray_address_where_nothing_listens_is_refused_quickly(
        base: dict[str, Any], form: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    address = form.format(port=_closed_port())
    start = time.monotonic()
    with pytest.raises(ParamsError) as info:
        check_machine(parse_params(changed(base, train__backend="ray",
                                           train__ray_address=address)))
    assert time.monotonic() - start < 10  # Ray itself waits 30 s, then a traceback
    assert str(info.value).startswith(f"train.ray_address = {address!r}: nothing answers"), \
        info.value


def test_a_ray_address_from_the_environment_is_named_as_such(
        base: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{_closed_port()}")
    with pytest.raises(ParamsError, match=r"^RAY_ADDRESS \(environment\)"):
        check_machine(parse_params(changed(base, train__backend="ray")))


def test_a_ray_address_where_a_cluster_listens_passes(base: dict[str, Any],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        check_machine(parse_params(changed(base, train__backend="ray",
                                           train__ray_address=f"ray://127.0.0.1:{port}")))


@pytest.mark.parametrize("p", [1009, 2003])
def test_a_model_too_big_for_the_memory_is_refused_with_the_estimate(
        base: dict[str, Any], p: int) -> None:
    params = parse_params(changed(base, data__p=p))
    with pytest.raises(ParamsError) as info:
        check_memory(params, free=int(45 * GIB))  # the 22.5 GiB the trainer may plan with
    msg = str(info.value)
    assert msg.startswith(f"data.p = {p}: ") and "GiB" in msg and "22.5 GiB" in msg, msg
    # At p = 1009 a width-32 model trains on ~815 000 pairs: tens of GiB of activations.
    need = float(msg.split(" needs about ")[1].split(" GiB")[0])
    assert need > 22.5, msg


def test_the_default_grid_fits_a_laptop(base: dict[str, Any]) -> None:
    check_memory(parse_params(base), free=4 * GIB)


def test_the_check_stage_refuses_before_writing_its_stamp(tmp_path: Path,
                                                          base: dict[str, Any]) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(changed(base, data__p=2003)))
    res = subprocess.run([sys.executable, str(ROOT / "stages/check.py")], cwd=tmp_path,
                         capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("[check] error in params.yaml: data.p = 2003: "), res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "metrics").exists()


# ------------------------------------------------------------------------------------------
# params.yaml edited while the train stage runs.


def _load_stage(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / f"stages/{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("edit, named", [({"train__steps": 21}, "train"),
                                         ({"attn_rate": [0.0, 0.5]}, "attn_rate"),
                                         ({"data__split_seed": 7}, "data")])
def test_params_edited_while_training_stop_the_stage_naming_the_file(
        tmp_path: Path, base: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
        edit: dict[str, object], named: str) -> None:
    tiny = changed(base, attn_rate=[0.0], width=[32], seed=[0], train__steps=20)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny))
    monkeypatch.chdir(tmp_path)
    stage = _load_stage("train")
    monkeypatch.setattr(stage, "load_dataset", lambda *a: None)

    def train_grid(*args: object, **kwargs: object) -> object:  # the user edits meanwhile
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(changed(tiny, **edit)))
        return type("Out", (), {"trained": [], "reused": [], "backend": "local"})()

    monkeypatch.setattr(stage, "train_grid", train_grid)
    with pytest.raises(ParamsError, match=rf"params.yaml changed while the train stage ran "
                                          rf"\({named}\)"):
        stage.main()
    assert not (tmp_path / "metrics/train.json").exists()  # DVC records nothing of it


def test_an_edit_outside_the_train_params_does_not_stop_it(
        tmp_path: Path, base: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = changed(base, attn_rate=[0.0], width=[32], seed=[0], train__steps=20)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny))
    monkeypatch.chdir(tmp_path)
    stage = _load_stage("train")
    monkeypatch.setattr(stage, "load_dataset", lambda *a: None)

    def train_grid(*args: object, **kwargs: object) -> object:
        (tmp_path / "params.yaml").write_text(
            "# a comment\n" + yaml.safe_dump(changed(tiny, render__fig1_width=32)))
        return type("Out", (), {"trained": [], "reused": [], "backend": "local"})()

    monkeypatch.setattr(stage, "train_grid", train_grid)
    stage.main()
    assert (tmp_path / "metrics/train.json").is_file()


# ------------------------------------------------------------------------------------------
# The run store: byte-identical snapshots, a broken run named when it is trained again.


def _tiny_run(base: dict[str, Any]) -> tuple[Params, RunSpec, dict[str, torch.Tensor]]:
    params = parse_params(changed(base, attn_rate=[0.0], width=[32], seed=[0], train__steps=20,
                                  train__snapshots=[0, 20]))
    spec = grid_groups(params)[0][1][0]
    gen = torch.Generator().manual_seed(0)
    weights = {k: torch.randn(s, generator=gen)
               for k, s in param_shapes(model_config(spec)).items()}
    return params, spec, weights


def test_the_same_run_written_again_is_byte_identical(tmp_path: Path) -> None:
    # safetensors writes its metadata in hash-map order, which changes from one file to the next
    weights = {f"t{i}": torch.full((3,), float(i)) for i in range(5)}
    outs = []
    for i in range(8):
        run_dir = tmp_path / f"r{i}" / "abc"
        write_run(run_dir, weights, {"run_id": "abc"}, pd.DataFrame({"step": [0]}),
                  {0: weights, 20: weights})
        outs.append({p.relative_to(run_dir): p.read_bytes()
                     for p in sorted(run_dir.rglob("*.safetensors"))})
    assert len(outs[0]) == 3
    assert all(o == outs[0] for o in outs[1:])


def test_a_broken_run_directory_is_trained_again_naming_the_file(
        tmp_path: Path, base: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    params, spec, weights = _tiny_run(base)
    run_dir = tmp_path / spec.run_id
    write_run(run_dir, weights, {"run_id": spec.run_id, "attn_rate": 0.0, "d_model": 32,
                                 "n_layers": 1, "n_heads": 4, "p": 59, "init_seed": 0,
                                 "split_seed": 0, "act": "relu", "device": "cpu",
                                 "eval_every": params.train.eval_every,
                                 "snapshots": list(params.train.snapshot_steps)},
              pd.DataFrame({"step": [0]}), {0: weights, 20: weights})
    assert is_whole(run_dir, spec, params.train)
    data = (run_dir / WEIGHTS).read_bytes()
    (run_dir / WEIGHTS).write_bytes(data[: len(data) // 2])  # torn
    with caplog.at_level(logging.WARNING):
        assert not is_whole(run_dir, spec, params.train)
    assert str(run_dir / WEIGHTS) in caplog.text and "training the run again" in caplog.text


# ------------------------------------------------------------------------------------------
# Ctrl-C, and the package a stage imports.


def test_ctrl_c_prints_one_line_and_no_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    def main() -> None:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as info:
        cli.run_stage("train", main)
    assert info.value.code == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("[train] interrupted") and len(err.splitlines()) == 1, err


def test_ctrl_c_in_a_real_stage_process(tmp_path: Path) -> None:
    script = tmp_path / "slow.py"
    script.write_text("import time\nfrom clockpizza.io.cli import run_stage\n"
                      "def main():\n    print('ready', flush=True)\n    time.sleep(60)\n"
                      "run_stage('train', main)\n")
    # A shell's background job (`pytest … &`) starts with SIGINT ignored, and a child inherits
    # that; give the stage the default handling a terminal's Ctrl-C meets.
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout and proc.stdout.readline().strip() == "ready"
    proc.send_signal(2)  # SIGINT, what Ctrl-C sends
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "Traceback" not in err and err.strip().startswith("[train] interrupted"), err


def test_a_stage_imports_its_checkout_not_another_installed_clone(tmp_path: Path) -> None:
    other = tmp_path / "other-clone" / "clockpizza"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("raise ImportError('the other clone was imported')\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    res = subprocess.run([sys.executable, str(ROOT / "stages/check.py")], cwd=work,
                         capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(other.parent)))
    assert res.returncode == 0, res.stderr
    assert (work / "metrics/params_checked.txt").is_file()
