"""The attention-free models A, B, C, D, X against a naive one-model reference written from
docs/specification.md,
their init, their checkpoint names, and the metrics on them."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from clockpizza.analysis.metrics import gradient_symmetricity, gs_triples, model_metrics
from clockpizza.science.architectures import init_model, load_model
from clockpizza.science.data import make_dataset
from clockpizza.science.mlp_family import BatchedMLP, MLPConfig, init_params
from clockpizza.science.model import stack

FAMILY = ("A", "B", "C", "D", "X")




def spec_shapes(family: str, p: int, h: int) -> dict[str, tuple[int, ...]]:
    """Checkpoint names and shapes, by hand from the module docstring and docs/specification.md."""
    e = h // 2 if family == "D" else h
    shapes = {"embed.W_E": (p, e), "l1.weight": (h, 2 * e if family == "D" else e),
              "l1.bias": (h,), "unembed.W_U": (h, p)}
    if family == "X":
        shapes["embed2.W_E"] = (p, h)
    if family in ("B", "C"):
        shapes |= {"l2.weight": (h, h), "l2.bias": (h,)}
    return shapes


def naive(w: dict[str, Tensor], family: str, a: int, b: int) -> Tensor:
    """the specification's model ``family`` for one pair, float64: logits = hidden @ W_unembedᵀ."""
    w = {k: v.double() for k, v in w.items()}

    def lin(name: str, x: Tensor) -> Tensor:  # torch.nn.Linear: x Wᵀ + b
        return w[f"{name}.weight"] @ x + w[f"{name}.bias"]

    e_a = w["embed.W_E"][a]
    e_b = w["embed2.W_E" if family == "X" else "embed.W_E"][b]
    if family in ("A", "B", "X"):
        hidden = lin("l1", e_a + e_b).clamp_min(0)
    elif family == "C":
        hidden = (lin("l1", e_a) + lin("l1", e_b)).clamp_min(0)
    else:  # D: concatenated half-width embeddings
        hidden = lin("l1", torch.cat([e_a, e_b])).clamp_min(0)
    if family in ("B", "C"):
        hidden = lin("l2", hidden).clamp_min(0)
    w_unembed = w["unembed.W_U"].T  # [p, h], the paper's unembed.weight
    return hidden @ w_unembed.T


@pytest.mark.parametrize("family", FAMILY)
def test_forward_matches_naive_spec_model(family: str) -> None:
    p, h = 5, 8
    gen = torch.Generator().manual_seed(FAMILY.index(family))
    shapes = spec_shapes(family, p, h)
    # Random weights and biases, larger than the init, so every ReLU is sometimes on, sometimes off.
    models = [{k: torch.randn(s, generator=gen) for k, s in shapes.items()} for _ in range(3)]
    batched = BatchedMLP(MLPConfig(family, p, h), stack(models)).double()
    a, b = torch.arange(p).repeat_interleave(p), torch.arange(p).repeat(p)
    got = batched(torch.stack([a, b], dim=-1)).detach()
    assert got.shape == (3, p * p, p)
    for m in range(3):
        want = torch.stack([naive(models[m], family, i, j) for i, j in zip(a.tolist(), b.tolist(),
                                                                           strict=True)])
        torch.testing.assert_close(got[m], want, atol=1e-10, rtol=1e-10)
    assert batched.attn_rate.isnan().all()  # no attention: the rate is missing, not a number


@pytest.mark.parametrize("family", FAMILY)
def test_checkpoint_names_shapes_and_init(family: str) -> None:
    p, h = 59, 256
    cfg = MLPConfig(family, p, h)
    w = init_params(cfg, seed=0)
    assert {k: tuple(v.shape) for k, v in w.items()} == spec_shapes(family, p, h)
    model = BatchedMLP.from_seeds(cfg, [0, 1])
    assert {k: tuple(v.shape) for k, v in model.model_params(1).items()} == spec_shapes(
        family, p, h)
    for name, x in w.items():
        x = x.double()
        if name.endswith("W_E"):  # specification: embed sd 1/sqrt(h/2), also for D's h/2-wide rows
            assert abs(x.std().item() * math.sqrt(h / 2) - 1) < 0.05, name
        elif name.endswith("W_U"):  # specification: unembed sd 1/sqrt(h)
            assert abs(x.std().item() * math.sqrt(h) - 1) < 0.05, name
        else:  # nn.Linear's default: uniform on ±1/sqrt(fan_in), bias included
            bound = 1 / math.sqrt(w[name.replace("bias", "weight")].shape[1])
            assert x.abs().max().item() <= bound
            assert x.abs().max().item() > 0.9 * bound, name
            assert abs(x.std().item() / (bound / math.sqrt(3)) - 1) < 0.2, name


def test_init_depends_on_the_seed_alone() -> None:
    cfg = MLPConfig("X", 11, 16)
    group, alone = BatchedMLP.from_seeds(cfg, [3, 5]), BatchedMLP.from_seeds(cfg, [5])
    for k, v in alone.model_params(0).items():
        assert torch.equal(group.model_params(1)[k], v), k
    assert not torch.equal(group.model_params(0)["embed.W_E"], group.model_params(1)["embed.W_E"])


def test_refuses_bad_configs_and_an_equals_token() -> None:
    with pytest.raises(ValueError, match="even"):
        MLPConfig("D", 7, 9)
    with pytest.raises(ValueError, match="one of A, B, C, D, X"):
        MLPConfig("E", 7, 8)
    model = BatchedMLP.from_seeds(MLPConfig("A", 7, 8), [0])
    with pytest.raises(ValueError, match="no '=' token"):
        model(torch.tensor([[1, 2, 7]]))
    with pytest.raises(ValueError, match="no attention"):
        init_model(MLPConfig("A", 7, 8), [0], [0.5])


@pytest.mark.parametrize("family", FAMILY)
def test_gs_is_one_where_the_output_depends_on_a_sum_of_embeddings(family: str) -> None:
    # A, B and X see E[a] + E[b] (E1[a] + E2[b]); C sees L1(E[a]) + L1(E[b]) = W1 (E[a] + E[b])
    # + 2 b1. The gradients with respect to the two looked-up rows are then identical: GS = 1.
    # D concatenates, so its two gradients differ.
    p, h = 13, 16
    model = BatchedMLP.from_seeds(MLPConfig(family, p, h), [0, 1])
    gs = gradient_symmetricity(model, p, gs_triples(p, 50, 0))
    if family == "D":
        assert (gs < 0.5).all(), gs
    else:
        torch.testing.assert_close(gs, torch.ones(2, dtype=torch.float64), atol=1e-6, rtol=0)


def test_model_metrics_of_the_family_are_those_of_each_model_alone() -> None:
    p, h = 11, 16
    cfg = MLPConfig("X", p, h)
    model = BatchedMLP.from_seeds(cfg, [0, 1, 2])
    is_train = torch.as_tensor(make_dataset(p, 0.8, 0)["is_train"].to_numpy(copy=True))
    triples = gs_triples(p, 20, 0)
    together = model_metrics(model, p, triples, 4, is_train)
    alone = model_metrics(load_model(cfg, stack([model.model_params(1)]), [None]), p, triples, 4,
                          is_train)
    for name, value in alone.items():
        assert torch.isfinite(together[name]).all(), name
        torch.testing.assert_close(together[name][1:2], value, atol=1e-6, rtol=1e-6)
