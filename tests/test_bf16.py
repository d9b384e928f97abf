"""bf16 (train.precision) trains the model it claims to: every step's forward reads the weights
AdamW has just updated, so the recorded history belongs to the saved weights, a bf16 run follows
its fp32 twin to bf16 rounding, and a resumed bf16 run is the uninterrupted one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from clockpizza.io.params import load_params
from clockpizza.science.data import make_dataset
from clockpizza.science.model import cross_entropy64
from clockpizza.science.spec import REFERENCE, RunSpec, engine_note, group_specs
from clockpizza.science.train import SplitTensors, train_group

P = 23
CPU = torch.device("cpu")


def runs(precision: str, steps: int) -> list[RunSpec]:
    base = RunSpec(attn_rate=0.0, d_model=16, n_layers=1, n_heads=4, act="relu", p=P,
                   train_frac=0.8, split_seed=0, init_seed=0, steps=steps, lr=1e-3,
                   weight_decay=2.0, beta1=0.9, beta2=0.98, eps=1e-8, warmup_steps=10,
                   precision=precision)
    return [dataclasses.replace(base, attn_rate=a) for a in (0.0, 1.0)]


@pytest.fixture(scope="module")
def data() -> SplitTensors:
    return SplitTensors.from_table(make_dataset(P, 0.8, 0), P, CPU)


def test_the_recorded_bf16_loss_is_the_loss_of_the_returned_weights(data: SplitTensors) -> None:
    result = train_group(runs("bf16", 30), data, CPU, eval_every=10)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fresh = cross_entropy64(result.model(data.x_train), data.y_train)
    recorded = torch.tensor([h.train_loss.iloc[-1] for h in result.history], dtype=torch.float64)
    # a forward that still read the step-0 weights would be off by ~0.03 here
    torch.testing.assert_close(recorded, fresh, rtol=0, atol=1e-9)


def test_bf16_training_follows_fp32_training(data: SplitTensors) -> None:
    # By step 200 the fp32 losses have fallen from 3.1 to 2.4-2.8; a bf16 run whose forward
    # were frozen at its initial weights would still be near 3.1. Weights are not compared:
    # AdamW turns a rounding difference of a small gradient into a learning-rate-sized step.
    fp32 = train_group(runs("fp32", 200), data, CPU, eval_every=100)
    bf16 = train_group(runs("bf16", 200), data, CPU, eval_every=100)
    for a, b in zip(fp32.history, bf16.history, strict=True):
        assert a.train_loss.iloc[-1] < a.train_loss.iloc[0] - 0.3, "fp32 must have learned"
        assert abs(a.train_loss.iloc[-1] - b.train_loss.iloc[-1]) < 0.05
        assert abs(a.test_loss.iloc[-1] - b.test_loss.iloc[-1]) < 0.05


class Killed(Exception):
    pass


def test_a_resumed_bf16_group_is_the_uninterrupted_one(data: SplitTensors,
                                                       tmp_path: Path) -> None:
    def kill(step: int) -> None:
        if step == 20:
            raise Killed

    whole = train_group(runs("bf16", 30), data, CPU, eval_every=10)
    ckpt = tmp_path / "group.pt"
    with pytest.raises(Killed):
        train_group(runs("bf16", 30), data, CPU, eval_every=10, checkpoint=ckpt,
                    checkpoint_seconds=0, on_progress=kill)
    resumed = train_group(runs("bf16", 30), data, CPU, eval_every=10, checkpoint=ckpt)
    assert resumed.resumed_from == 20
    for name, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    for a, b in zip(whole.history, resumed.history, strict=True):
        assert a.equals(b)


def test_bf16_runs_record_the_reference_engine_they_train_with() -> None:
    params = load_params()
    assert params.train.engine == "fast"
    bf16 = dataclasses.replace(params, train=dataclasses.replace(params.train, precision="bf16"))
    assert {s.engine for s in group_specs(bf16, 16, 0)} == {REFERENCE}
    note = engine_note(bf16)
    assert note is not None and "bf16" in note and "reference" in note, "said, not silent"
    assert engine_note(params) is None, "the default trains every run with the fast step"
