"""The fast step (train.engine: fast) computes the reference step's mathematics.

It cannot be bit for bit the reference (other summation orders, the tables), so equality is
shown where rounding cannot hide a difference of mathematics: in float64, to ~1e-12, for one
step and over hundreds of AdamW steps; in float32 for one step, to float32 rounding; and for the
cross entropy's gradient on confident models, where a plain float32 computation is wrong.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import Tensor

from clockpizza.io.params import load_params
from clockpizza.science.architectures import init_model, model_config
from clockpizza.science.data import make_dataset
from clockpizza.science.fast import FastStep, _cross_entropy_grad, supports
from clockpizza.science.model import BatchedTransformer, cross_entropy64
from clockpizza.science.spec import RunSpec, fast_step_applies
from clockpizza.science.train import SplitTensors, train_group

P = 23
CPU = torch.device("cpu")
OLD_ID = "31b5587f0ada"  # base_spec().run_id computed by the code of 01cb2d4


def base_spec(**kw: object) -> RunSpec:
    spec = RunSpec(attn_rate=0.0, d_model=16, n_layers=1, n_heads=4, act="relu", p=P,
                   train_frac=0.8, split_seed=0, init_seed=0, steps=20, lr=1e-3,
                   weight_decay=2.0, beta1=0.9, beta2=0.98, eps=1e-8, warmup_steps=10,
                   precision="fp32")
    return dataclasses.replace(spec, **kw)


RATES = (0.0, 0.3, 0.7, 1.0)
CASES = {  # (model config, data encoding): the paper's, and the appendix variants
    "paper": {},
    "gelu": {"act": "gelu"},
    "eqn_sign (n_ctx 3)": {"eqn_sign": True},
    "diff_vocab": {"diff_vocab": True},
}


def setup(case: dict[str, object], dtype: torch.dtype,
          per_run: bool = False) -> tuple[BatchedTransformer, SplitTensors, Tensor | None]:
    spec = base_spec(**case)
    model = init_model(model_config(spec), [0, 1, 2, 3], list(RATES)).to(dtype)
    assert isinstance(model, BatchedTransformer)
    table = make_dataset(P, 0.8, 0)
    enc = {"diff_vocab": spec.diff_vocab, "eqn_sign": spec.eqn_sign}
    if not per_run:
        return model, SplitTensors.from_table(table, P, CPU, **enc), None
    gen = torch.Generator().manual_seed(1)
    masks = [torch.rand(P * P, generator=gen) < 0.8 for _ in RATES]
    data = SplitTensors.per_run(table, masks, P, CPU, **enc)
    assert data.train_mask is not None
    return model, data, data.train_mask


def reference_grads(model: BatchedTransformer, data: SplitTensors,
                    mask: Tensor | None) -> dict[str, Tensor]:
    for p in model.parameters():
        p.grad = None
    cross_entropy64(model(data.x_train), data.y_train, mask).sum().backward()
    return {k: p.grad.clone() for k, p in model.named_parameters()}  # type: ignore[union-attr]


def fast_grads(model: BatchedTransformer, data: SplitTensors, mask: Tensor | None,
               chunk: int | None = None) -> dict[str, Tensor]:
    for p in model.parameters():
        p.grad = None
    weight = None if mask is None else mask.double() / mask.sum(dim=1, keepdim=True)
    FastStep(model, data.x_train, data.y_train, weight, chunk=chunk)()
    return {k: p.grad.clone() for k, p in model.named_parameters()}  # type: ignore[union-attr]


def rel_err(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("per_run", [False, True], ids=["shared split", "split per run"])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_one_step_in_float64_gives_the_reference_gradients(case: dict[str, object],
                                                           per_run: bool) -> None:
    model, data, mask = setup(case, torch.float64, per_run)
    ref = reference_grads(model, data, mask)
    # several chunks, uneven ones too: summing a gradient over chunks is the same sum
    for chunk in (None, 100, 7 * P):
        got = fast_grads(model, data, mask, chunk)
        assert got.keys() == ref.keys()
        for name in ref:
            assert rel_err(got[name], ref[name]) < 1e-12, (name, chunk)


def test_one_step_in_float32_agrees_to_float32_rounding() -> None:
    model, data, _ = setup({}, torch.float32)
    exact = {k: v.double() for k, v in reference_grads(model.double(), data, None).items()}
    model = model.float()
    ref = reference_grads(model, data, None)
    got = fast_grads(model, data, None)
    for name in ref:
        # both are float32 computations of the same float64 value, within a few ulps
        # of the gradient's scale (measured: 1e-7 to 4e-7)
        assert rel_err(got[name].double(), exact[name]) < 2e-6, name
        assert rel_err(ref[name].double(), exact[name]) < 2e-6, name


def adamw_trajectory(case: dict[str, object], fast: bool, steps: int) -> dict[str, Tensor]:
    model, data, _ = setup(case, torch.float64)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-8,
                            weight_decay=2.0, foreach=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: min(t / 10, 1.0))
    step = FastStep(model, data.x_train, data.y_train, chunk=150)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        if fast:
            step()
        else:
            cross_entropy64(model(data.x_train), data.y_train).sum().backward()
        opt.step()
        sched.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("case", [CASES["paper"], CASES["eqn_sign (n_ctx 3)"]],
                         ids=["paper", "eqn_sign"])
def test_three_hundred_adamw_steps_in_float64_follow_the_reference(
        case: dict[str, object]) -> None:
    # AdamW turns a rounding difference of a gradient near zero into a learning-rate-sized
    # step, so float32 trajectories of any two orders of summation part within ~100 steps
    # (tests/test_engine.py). In float64 the rounding is 1e-16 and what is left after 300
    # steps is still far below anything float32 could resolve: a different *mathematics*
    # would show at once (a wrong mask, a missing term: 1e-3 after a few steps).
    ref = adamw_trajectory(case, fast=False, steps=300)
    got = adamw_trajectory(case, fast=True, steps=300)
    for name, value in ref.items():
        if name == "attn_rate":
            continue
        assert (got[name] - value).abs().max() < 1e-8, name


def test_the_cross_entropy_gradient_holds_for_confident_models() -> None:
    # Margins of 10-40 nats: 1 − p_label is 1e-4 to 1e-17, far below float32's resolution of
    # 1 (6e-8), and at the largest margins below float64's (1.1e-16) too.
    gen = torch.Generator().manual_seed(0)
    n = 200
    labels = torch.randint(0, P, (n,), generator=gen)
    logits = torch.randn(3, n, P, generator=gen)
    logits[:, torch.arange(n), labels] += torch.linspace(10, 40, n)
    weight = torch.full((3, n, 1), 1 / n)
    at_label = (slice(None), torch.arange(n), labels)
    # the truth, in float64 without cancellation: the label's entry is minus the others' sum
    p64 = logits.double().softmax(-1)
    truth = p64.clone()
    truth[at_label] = 0
    truth[at_label] = -truth.sum(-1)
    truth = truth / n
    # the specification's float64 loss through autograd: right to its absolute resolution, a few
    # ulps
    # of 1 in float64 (measured: 6e-16 / n)
    l64 = logits.double().requires_grad_()
    cross_entropy64(l64, labels).sum().backward()
    assert l64.grad is not None
    assert ((l64.grad - truth).abs() <= 2e-15 / n).all()
    # the fast step's float32 gradient: every entry to a float32 *relative* precision, the
    # label's tiny one included, so never worse than the float64 one to float32 rounding. (A
    # probability e^-40 carries the rounding of the float32 difference of two logits, 40·6e-8;
    # measured: 2e-6 at most.)
    flat = ((torch.arange(3).view(3, 1) * n + torch.arange(n)) * P + labels).reshape(-1)
    got = _cross_entropy_grad(logits.clone(), flat, weight).double()
    assert ((got - truth).abs() <= 5e-6 * truth.abs()).all()
    # the plain float32 computation loses the label's entry (0 where it is −1e-9 ... −1e-17):
    # what the float64 loss is there to prevent, and what the assertion above would catch
    naive = (logits.softmax(-1) - torch.nn.functional.one_hot(labels, P)) * weight
    assert (naive[at_label] == 0).float().mean() > 0.5
    assert (truth[at_label] < 0).all()


def test_a_trained_group_with_the_fast_engine_matches_the_reference_one() -> None:
    # Through train_group (tables, chunks, the fused AdamW, the history): 12 steps in float32
    # agree to float32 rounding, before AdamW's amplification sets in.
    table = make_dataset(P, 0.8, 0)
    data = SplitTensors.from_table(table, P, CPU)
    runs = [base_spec(attn_rate=a, steps=12) for a in RATES]
    ref = train_group(runs, data, CPU, eval_every=4)
    fast = train_group([dataclasses.replace(r, engine="fast") for r in runs], data, CPU,
                       eval_every=4)
    for name, value in ref.model.state_dict().items():
        assert (value - fast.model.state_dict()[name]).abs().max() < 1e-5, name
    for a, b in zip(ref.history, fast.history, strict=True):
        assert list(a.step) == list(b.step)
        assert (a.train_loss - b.train_loss).abs().max() < 1e-5
        assert (a.test_acc - b.test_acc).abs().max() < 0.01


def test_the_engine_is_part_of_a_run_and_reference_ids_are_unchanged() -> None:
    ref = base_spec()
    fast = dataclasses.replace(ref, engine="fast")
    assert ref.run_id != fast.run_id
    assert ref.group_key != fast.group_key
    # the id this spec had at 01cb2d4, before the engine existed: every stored reference run
    # keeps its id (and its place in runs/, reused rather than trained again)
    assert ref.run_id == OLD_ID


def test_train_engine_fast_records_reference_where_there_is_no_fast_step() -> None:
    params = load_params()
    assert params.train.engine == "fast"  # the default
    for n_layers, precision in ((1, "fp32"), (1, "tf32"), (2, "fp32"), (1, "bf16")):
        spec = base_spec(n_layers=n_layers, precision=precision)
        model = init_model(model_config(spec), [0], [0.5])
        assert supports(model, precision) == fast_step_applies(n_layers, precision)
    with pytest.raises(ValueError, match="no fast step"):
        spec = base_spec(n_layers=2, engine="fast", steps=1)
        data = SplitTensors.from_table(make_dataset(P, 0.8, 0), P, CPU)
        train_group([spec], data, CPU, eval_every=1)


# sha256 (first 16 hex digits) of the weights below after 60 reference steps, computed by the code
# of 01cb2d4 (before the fast step existed) with torch 2.13.0+cpu on an AVX512 CPU (the dev
# machine). CPU kernels round differently across torch builds and instruction sets, so elsewhere
# the comparison is skipped rather than failed.
OLD_WEIGHTS_SHA = "ed8d610598f74bd2"
OLD_RUN_IDS = ["4a6098aafd9d", "73270ad18f04", "848d6adea733", "4148d8b6b31d"]


def _cpu_vendor() -> str:
    """The CPU's vendor id (AuthenticAMD, GenuineIntel, ...), empty where Linux does not say."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    return next((ln.split(":", 1)[1].strip() for ln in text.splitlines()
                 if ln.startswith("vendor_id")), "")


@pytest.mark.skipif(
    torch.__version__ != "2.13.0+cpu" or torch.backends.cpu.get_cpu_capability() != "AVX512"
    or _cpu_vendor() != "AuthenticAMD",
    # An Intel Xeon with AVX-512 and the same torch rounds differently (measured): the digest
    # holds for the CPU family it was recorded on.
    reason="the recorded digest is of torch 2.13.0+cpu on the AMD EPYC (AVX-512) it was "
           "recorded on",
)
def test_the_reference_engine_trains_bit_for_bit_what_it_trained_before_the_fast_step() -> None:
    # "Results unchanged where the settings are unchanged": a reference run trained by today's
    # code has the weights (every bit) and the id it had before the engine existed.
    import hashlib

    runs = [base_spec(attn_rate=a, steps=60) for a in RATES]
    data = SplitTensors.from_table(make_dataset(P, 0.8, 0), P, CPU)
    result = train_group(runs, data, CPU, eval_every=20)
    digest = hashlib.sha256()
    for name, value in sorted(result.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().contiguous().numpy().tobytes())
    assert [r.run_id for r in runs] == OLD_RUN_IDS
    # a different BLAS kernel on another AVX512 CPU would also change it: name the machine
    import platform
    assert digest.hexdigest()[:16] == OLD_WEIGHTS_SHA, (
        f"reference weights differ from 01cb2d4's on {platform.processor() or platform.machine()}"
        f" with torch {torch.__version__}; if this CPU is not the dev machine's, rerun 01cb2d4")
