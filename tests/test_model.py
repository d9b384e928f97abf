"""The batched transformer against the reference model (clockpizza.science.reference), its init,
its TransformerLens names, and the trainer that steps a group of them together."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from clockpizza.science import reference
from clockpizza.science.data import encode, make_dataset
from clockpizza.science.model import (
    BatchedTransformer,
    TransformerConfig,
    cross_entropy64,
    init_params,
    stack,
)
from clockpizza.science.spec import RunSpec
from clockpizza.science.train import SplitTensors, train_group


def tl_shapes(v: int, n_ctx: int, d: int, h: int, n_layers: int) -> dict[str, tuple[int, ...]]:
    """Per-model TransformerLens names and shapes, by hand (d_head = d / h, d_mlp = 4 d)."""
    e, m = d // h, 4 * d
    shapes = {"embed.W_E": (v, d), "pos_embed.W_pos": (n_ctx, d), "unembed.W_U": (d, v)}
    for i in range(n_layers):
        shapes[f"blocks.{i}.attn.W_Q"] = (h, d, e)
        shapes[f"blocks.{i}.attn.W_K"] = (h, d, e)
        shapes[f"blocks.{i}.attn.W_V"] = (h, d, e)
        shapes[f"blocks.{i}.attn.W_O"] = (h, e, d)
        shapes[f"blocks.{i}.mlp.W_in"] = (d, m)
        shapes[f"blocks.{i}.mlp.b_in"] = (m,)
        shapes[f"blocks.{i}.mlp.W_out"] = (m, d)
        shapes[f"blocks.{i}.mlp.b_out"] = (d,)
    return shapes


def random_weights(shapes: dict[str, tuple[int, ...]], gen: torch.Generator,
                   std: float = 0.5) -> dict[str, Tensor]:
    # Larger than the init scale, with non-zero biases, so softmax is far from uniform and
    # every term of the forward pass matters.
    return {k: torch.randn(s, generator=gen) * std for k, s in shapes.items()}


ALPHAS = [0.0, 0.25, 0.75, 1.0]  # exact in float32, as the model stores them


def double(w: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.double() for k, v in w.items()}




@pytest.mark.parametrize("n_layers", [1, 2])
@pytest.mark.parametrize("act", ["relu", "gelu"])
@pytest.mark.parametrize("eqn_sign", [False, True])
def test_forward_matches_the_reference_model(n_layers: int, act: str, eqn_sign: bool) -> None:
    p, d, h = 5, 8, 2
    n_ctx, v = (3, p + 1) if eqn_sign else (2, p)
    cfg = TransformerConfig(d_vocab=v, n_ctx=n_ctx, d_model=d, n_heads=h, n_layers=n_layers,
                            act=act)
    gen = torch.Generator().manual_seed(n_layers * 10 + len(act) + n_ctx)
    shapes = tl_shapes(v, n_ctx, d, h, n_layers)
    models = [random_weights(shapes, gen) for _ in ALPHAS]
    # In float64 the only difference left is the order of summation, so the tolerance is tight.
    batched = BatchedTransformer(cfg, stack(models), ALPHAS).double()
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    tokens = encode(a, b, p, eqn_sign=eqn_sign)
    got = batched(tokens).detach()
    assert got.shape == (len(ALPHAS), p * p, v)
    for m, alpha in enumerate(ALPHAS):
        want = reference.logits(double(models[m]), tokens, alpha, act)
        torch.testing.assert_close(got[m], want, atol=1e-10, rtol=1e-10)
    # The float32 model (what trains) agrees too, up to float32 rounding (logits reach ~350).
    got32 = BatchedTransformer(cfg, stack(models), ALPHAS)(tokens).detach()
    assert got32.dtype == torch.float32
    torch.testing.assert_close(got32.double(), got, atol=1e-4, rtol=1e-5)


def test_attention_pattern_matches_the_reference_in_every_layer() -> None:
    d, h, v, n_layers = 8, 2, 7, 2
    cfg = TransformerConfig(d_vocab=v, n_ctx=2, d_model=d, n_heads=h, n_layers=n_layers)
    gen = torch.Generator().manual_seed(0)
    models = [random_weights(tl_shapes(v, 2, d, h, n_layers), gen) for _ in ALPHAS]
    batched = BatchedTransformer(cfg, stack(models), ALPHAS).double()
    tokens = torch.tensor([[0, 1], [3, 6], [5, 5]])
    for layer in range(n_layers):
        got = batched.attention_pattern(tokens, layer=layer).detach()  # [M, B, h, q, k]
        for m, alpha in enumerate(ALPHAS):
            want = reference.attention_patterns(double(models[m]), tokens, alpha)[layer]
            torch.testing.assert_close(got[m], want, atol=1e-10, rtol=1e-10)


def test_constant_attention_weights_are_exactly_one() -> None:
    cfg = TransformerConfig(d_vocab=7, n_ctx=2, d_model=8, n_heads=2, n_layers=2)
    model = BatchedTransformer.from_seeds(cfg, [0, 1, 2], [0.0, 0.5, 1.0])
    tokens = torch.tensor([[0, 1], [3, 6], [5, 5]])
    for layer in (0, 1):
        pattern = model.attention_pattern(tokens, layer=layer).detach()
        assert torch.equal(pattern[0], torch.ones_like(pattern[0]))  # α = 0: weight 1 each
        # α = 1: softmax rows sum to 1; α = 0.5: rows sum to 0.5 + 0.5 * n_ctx = 1.5.
        torch.testing.assert_close(pattern[2].sum(-1), torch.ones(3, 2, 2))
        torch.testing.assert_close(pattern[1].sum(-1), torch.full((3, 2, 2), 1.5))


def test_parameter_names_and_shapes_are_transformer_lens() -> None:
    cfg = TransformerConfig(d_vocab=59, n_ctx=2, d_model=32, n_heads=4, n_layers=2)
    model = BatchedTransformer.from_seeds(cfg, [0, 1], [0.0, 1.0])
    want = {
        "embed.W_E": (59, 32), "pos_embed.W_pos": (2, 32), "unembed.W_U": (32, 59),
        **{f"blocks.{i}.{k}": s for i in (0, 1) for k, s in {
            "attn.W_Q": (4, 32, 8), "attn.W_K": (4, 32, 8), "attn.W_V": (4, 32, 8),
            "attn.W_O": (4, 8, 32), "mlp.W_in": (32, 128), "mlp.b_in": (128,),
            "mlp.W_out": (128, 32), "mlp.b_out": (32,)}.items()},
    }
    for i in (0, 1):
        got = {k: tuple(v.shape) for k, v in model.model_params(i).items()}
        assert got == want


def test_refuses_weights_in_another_layout() -> None:
    cfg = TransformerConfig(d_vocab=7, n_ctx=2, d_model=8, n_heads=2, n_layers=1)
    weights = stack([init_params(cfg, 0)])
    weights["blocks.0.attn.W_Q"] = weights["blocks.0.attn.W_Q"].transpose(-1, -2)  # [h, e, d]
    with pytest.raises(ValueError, match="W_Q"):
        BatchedTransformer(cfg, weights, [1.0])


def test_init_std_follows_spec() -> None:
    d, v = 256, 59  # d_vocab != d_model so W_U's 1/sqrt(d_vocab) is told apart from 1/sqrt(d)
    cfg = TransformerConfig(d_vocab=v, n_ctx=2, d_model=d, n_heads=4, n_layers=1)
    w = init_params(cfg, seed=0)
    want = {
        "embed.W_E": 1 / math.sqrt(d), "pos_embed.W_pos": 1 / math.sqrt(d),
        "blocks.0.attn.W_Q": 1 / math.sqrt(d), "blocks.0.attn.W_K": 1 / math.sqrt(d),
        "blocks.0.attn.W_V": 1 / math.sqrt(d), "blocks.0.attn.W_O": 1 / math.sqrt(d),
        "blocks.0.mlp.W_in": 1 / math.sqrt(4 * d), "blocks.0.mlp.W_out": 1 / math.sqrt(d),
        "unembed.W_U": 1 / math.sqrt(v),
    }
    assert set(w) == set(want) | {"blocks.0.mlp.b_in", "blocks.0.mlp.b_out"}
    for name, std in want.items():
        x = w[name].double()
        assert abs(x.std().item() / std - 1) < 0.15, name  # W_pos (512 draws) is the noisiest
        assert abs(x.mean().item()) < 5 * std / math.sqrt(x.numel()), name
    for name in ("blocks.0.mlp.b_in", "blocks.0.mlp.b_out"):
        assert torch.count_nonzero(w[name]) == 0


def test_init_depends_on_the_seed_alone() -> None:
    cfg = TransformerConfig(d_vocab=11, n_ctx=2, d_model=16, n_heads=4, n_layers=2)
    group = BatchedTransformer.from_seeds(cfg, [3, 5, 7], [0.0, 0.5, 1.0])
    alone = BatchedTransformer.from_seeds(cfg, [5], [0.5])
    for k, v in alone.model_params(0).items():
        assert torch.equal(group.model_params(1)[k], v), k
    assert not torch.equal(group.model_params(0)["embed.W_E"],
                           group.model_params(1)["embed.W_E"])


# ---------------------------------------------------------------------------------------------
# Training


def spec(attn_rate: float, *, p: int, steps: int, width: int = 16) -> RunSpec:
    return RunSpec(attn_rate=attn_rate, d_model=width, n_layers=1, n_heads=4, act="relu", p=p,
                   train_frac=0.8, split_seed=0, init_seed=0, steps=steps, lr=1e-3,
                   weight_decay=2.0, beta1=0.9, beta2=0.98, eps=1e-8, warmup_steps=10,
                   precision="fp32")


def split(p: int) -> SplitTensors:
    return SplitTensors.from_table(make_dataset(p, 0.8, 0), p, torch.device("cpu"))


def test_a_model_trains_the_same_inside_a_group_as_alone() -> None:
    p, steps = 31, 30
    data = split(p)
    group = train_group([spec(a, p=p, steps=steps) for a in (0.0, 0.5, 1.0)], data,
                        torch.device("cpu"), eval_every=10)
    alone = train_group([spec(0.5, p=p, steps=steps)], data, torch.device("cpu"), eval_every=10)
    h_group, h_alone = group.history[1], alone.history[0]
    assert h_group["step"].tolist() == h_alone["step"].tolist() == [0, 10, 20, 30]
    for col in ("train_loss", "test_loss", "train_acc", "test_acc"):
        torch.testing.assert_close(torch.tensor(h_group[col].to_numpy()),
                                   torch.tensor(h_alone[col].to_numpy()), atol=1e-5, rtol=1e-5)
    w_group, w_alone = group.model.model_params(1), alone.model.model_params(0)
    for k in w_alone:
        torch.testing.assert_close(w_group[k], w_alone[k], atol=1e-4, rtol=0)
    # Not vacuous: the weights moved, the loss fell, and the three rates ended up different.
    init = init_params(group.model.cfg, 0)
    assert not torch.allclose(w_alone["embed.W_E"], init["embed.W_E"], atol=1e-3)
    assert h_alone["train_loss"].iloc[-1] < h_alone["train_loss"].iloc[0]
    assert not torch.allclose(group.model.model_params(0)["embed.W_E"], w_group["embed.W_E"])


def test_first_update_has_learning_rate_zero() -> None:
    p = 11
    data = split(p)
    one = train_group([spec(1.0, p=p, steps=1)], data, torch.device("cpu"), eval_every=1)
    init = init_params(one.model.cfg, 0)
    for k, v in one.model.model_params(0).items():
        # With weight decay 2.0, any non-zero lr would shrink every weight by a factor 1 - 2 lr.
        assert torch.equal(v, init[k]), k
    two = train_group([spec(1.0, p=p, steps=2)], data, torch.device("cpu"), eval_every=1)
    assert not torch.equal(two.model.model_params(0)["embed.W_E"], init["embed.W_E"])


def test_cross_entropy_is_float64_and_correct() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=gen) * 3  # [M, B, V], float32
    labels = torch.tensor([0, 6, 3, 3, 1])
    got = cross_entropy64(logits, labels)
    assert got.dtype == torch.float64
    assert got.shape == (2,)
    for m in range(2):
        nll = []
        for i, y in enumerate(labels.tolist()):
            row = [float(x) for x in logits[m, i]]
            nll.append(math.log(sum(math.exp(x) for x in row)) - row[y])
        assert got[m].item() == pytest.approx(sum(nll) / len(nll), rel=1e-12)


def test_cross_entropy_of_a_confident_model_does_not_underflow() -> None:
    # Margin 25 over 6 wrong classes: loss = log(1 + 6 e^-25) ≈ 6 e^-25 ≈ 8.3e-11, which float32
    # cannot tell from zero (its spacing near 25 is ~2e-6).
    logits = torch.zeros(1, 1, 7)
    logits[0, 0, 2] = 25.0
    got = cross_entropy64(logits, torch.tensor([2])).item()
    assert got == pytest.approx(math.log1p(6 * math.exp(-25)), rel=1e-6)
    assert got > 0
