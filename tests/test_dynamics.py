"""Training dynamics: snapshots during training, their metrics, and when a run settles."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from clockpizza.analysis.collect import collect_tables
from clockpizza.analysis.metrics import gs_triples, model_metrics
from clockpizza.io.params import Params, load_params
from clockpizza.io.store import SNAPSHOTS, WEIGHTS, read_snapshots
from clockpizza.results.boundary import fit_main
from clockpizza.results.dynamics import settle_columns, settle_step
from clockpizza.science.architectures import load_model, model_config, param_shapes
from clockpizza.science.data import make_dataset
from clockpizza.science.grid import train_and_save
from clockpizza.science.model import stack
from clockpizza.science.spec import group_specs
from clockpizza.science.train import SplitTensors, train_group

REPO = Path(__file__).resolve().parents[1]
P = 23
STEPS = [0, 20, 50, 80]


def tiny(snapshots: object = STEPS) -> Params:
    params = load_params(REPO / "params.yaml")
    return dataclasses.replace(
        params, attn_rate=(0.0, 0.5, 1.0), width=(8,), seed=(0,),
        data=dataclasses.replace(params.data, p=P),
        train=dataclasses.replace(params.train, steps=80, eval_every=40, device="cpu",
                                  snapshots=snapshots))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Params, Path, object]:
    root = tmp_path_factory.mktemp("dyn")
    params = tiny(tuple(STEPS))
    dataset = make_dataset(P, 0.8, 0)
    train_and_save(params, 8, 0, dataset, root / "runs", checkpoints=root / "ckpt")
    tables = collect_tables(params, root / "runs", dataset, torch.device("cpu"))
    return params, root / "runs", tables


def test_every_run_keeps_its_snapshots_and_the_last_is_its_final_weights(trained) -> None:
    _, runs, _ = trained
    dirs = sorted((runs / "w8-s0").iterdir())
    assert len(dirs) == 3
    for d in dirs:
        names = sorted(p.name for p in (d / SNAPSHOTS).iterdir())
        assert names == [f"step_{s:06d}.safetensors" for s in STEPS]
        final = load_file(str(d / SNAPSHOTS / "step_000080.safetensors"))
        weights = load_file(str(d / WEIGHTS))
        assert final.keys() == weights.keys()
        assert all(torch.equal(final[k], weights[k]) for k in weights)  # bit for bit
        assert json.loads((d / "config.json").read_text())["snapshots"] == STEPS
        # TransformerLens names, as the final weights
        assert "blocks.0.attn.W_Q" in final and "embed.W_E" in final


def test_snapshot_weights_reloaded_reproduce_the_recorded_metrics(trained) -> None:
    params, runs, tables = trained
    dyn = tables.dynamics
    assert sorted(dyn["step"].unique()) == STEPS
    assert len(dyn) == 3 * len(STEPS)
    cfg_spec = group_specs(params, 8, 0)
    cfg = model_config(cfg_spec[0])
    dataset = make_dataset(P, 0.8, 0)
    is_train = torch.as_tensor(dataset["is_train"].to_numpy(copy=True)).expand(3, -1)
    for step in (20, 50):
        snaps = [read_snapshots(runs / "w8-s0" / s.run_id, param_shapes(cfg), [step])[step]
                 for s in cfg_spec]
        model = load_model(cfg, stack(snaps), [s.attn_rate for s in cfg_spec])
        with torch.no_grad():
            values = model_metrics(model, P, gs_triples(P, 100, 42), 4, is_train, exact=False)
        for i, s in enumerate(cfg_spec):
            row = dyn[(dyn["run_id"] == s.run_id) & (dyn["step"] == step)].iloc[0]
            for col in ("gradient_symmetricity", "distance_irrelevance", "circularity",
                        "test_acc", "train_loss"):
                assert row[col] == values[col][i].item(), (step, col)


def test_the_runs_table_says_when_each_run_settled(trained) -> None:
    _, _, tables = trained
    runs = tables.runs
    assert set(runs["phase_settle_step"]) <= set(STEPS)
    assert (runs["gs_settle_step"] >= 0).all() and (runs["di_settle_step"] >= 0).all()
    assert runs["phase_switched"].dtype == bool
    assert (runs["full_test_acc_step"] >= -1).all()


def test_a_killed_run_resumes_with_its_earlier_snapshots(tmp_path: Path) -> None:
    params = tiny()
    dataset = make_dataset(P, 0.8, 0)
    specs = group_specs(params, 8, 0)
    data = SplitTensors.from_table(dataset, P, torch.device("cpu"))
    cpu = torch.device("cpu")
    whole = train_group(specs, data, cpu, eval_every=40, snapshot_at=STEPS)

    class Killed(Exception):
        pass

    def kill(step: int) -> None:
        if step == 50:
            raise Killed

    ckpt = tmp_path / "c.pt"
    with pytest.raises(Killed):
        train_group(specs, data, cpu, eval_every=40, snapshot_at=STEPS, checkpoint=ckpt,
                    checkpoint_seconds=0.0, on_progress=kill)
    resumed = train_group(specs, data, cpu, eval_every=40, snapshot_at=STEPS, checkpoint=ckpt)
    assert resumed.resumed_from > 0
    assert sorted(resumed.snapshots) == STEPS
    for step in STEPS:
        for k, v in whole.snapshots[step].items():
            assert torch.equal(resumed.snapshots[step][k], v), (step, k)


def test_settle_steps_follow_their_definition() -> None:
    steps = np.array([0, 100, 300, 1000, 2000])
    assert settle_step(steps, np.array([0.5, 0.9, 0.955, 0.96, 0.97]), 0.02) == 300
    assert settle_step(steps, np.array([0.97, 0.5, 0.97, 0.97, 0.97]), 0.02) == 300
    assert settle_step(steps, np.array([0.97] * 5), 0.02) == 0
    labels = np.array(["non-circular", "clock", "pizza", "pizza", "pizza"], dtype=object)
    assert settle_step(steps, labels, None) == 300
    dyn = pd.DataFrame({"run_id": "r", "step": steps, "phase": labels,
                        "gradient_symmetricity": [0.5, 0.9, 0.955, 0.96, 0.97],
                        "distance_irrelevance": [0.9, 0.5, 0.3, 0.3, 0.3]})
    row = settle_columns(dyn).iloc[0]
    assert row["phase_settle_step"] == 300 and bool(row["phase_switched"]) is True
    assert row["gs_settle_step"] == 300 and row["di_settle_step"] == 300
    no_switch = dyn.assign(phase=["non-circular", "pizza", "pizza", "pizza", "pizza"])
    assert bool(settle_columns(no_switch).iloc[0]["phase_switched"]) is False


def test_snapshot_steps_of_the_params() -> None:
    assert tiny("log").train.snapshot_steps == (0, 80)
    p = tiny("log")
    p = dataclasses.replace(p, train=dataclasses.replace(p.train, steps=2000))
    assert p.train.snapshot_steps == (0, 100, 200, 300, 500, 1000, 2000)
    assert tiny("none").train.snapshot_steps == ()
    assert tiny((20, 0)).train.snapshot_steps == (0, 20)
    with pytest.raises(ValueError, match=r"train.snapshots\[0\] = 500: beyond train.steps"):
        tiny((500, 0, 20))  # beyond the last step: refused, never dropped silently


def test_the_figure_and_the_report_show_the_dynamics(trained) -> None:
    from clockpizza.figures.report import DYNAMICS, build_report, figure_recipes

    _, _, tables = trained
    figs = figure_recipes(tables.runs, fig1_width=128, boundary=fit_main(tables.runs, n_boot=0),
                          dynamics=tables.dynamics)
    assert DYNAMICS in figs
    gs_lines = [ln for ax in figs[DYNAMICS]().axes for ln in ax.get_lines()
                if ln.get_gid() and ln.get_gid().startswith("gradient_symmetricity-alpha-")]
    assert len(gs_lines) == 3  # one per attention rate
    assert list(gs_lines[0].get_xdata()) == STEPS
    report = build_report(tables.runs, {DYNAMICS: "figures/fig4_dynamics.png"}, 128,
                          dynamics=tables.dynamics)
    assert "## Training dynamics" in report
    assert "![training dynamics](figures/fig4_dynamics.png)" in report
    assert report.count("| 8 | ") >= 3  # a row per (width, α)
    # and every run apart, with its GS and DI at the last snapshot steps (the seeds not averaged)
    assert "### Each run's last snapshots" in report
    dyn = tables.dynamics.merge(tables.runs[["run_id", "attn_rate"]], on="run_id")
    for a, g in dyn.groupby("attn_rate"):
        g = g.set_index("step").loc[STEPS]
        gs = " / ".join(f"{x:.2f}" for x in g["gradient_symmetricity"])
        assert f"| 8 | {a:g} | 0 | " in report
        assert f" | {gs} | " in report, (a, gs)
    assert "## Training dynamics" not in build_report(tables.runs, {}, 128)
