"""The reference model (clockpizza.science.reference) is the executable specification: here it
is checked against the specification written out loop by loop, and against the authors'
released models; the batched model (tests/test_model.py), the fast step (below) and the
TransformerLens export (tests/test_interop.py) are checked against it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import Tensor

from clockpizza.science import reference
from clockpizza.science.data import encode, make_dataset
from clockpizza.science.fast import FastStep
from clockpizza.science.model import BatchedTransformer, TransformerConfig, stack
from clockpizza.science.paper import load_paper_run
from clockpizza.science.train import SplitTensors

ROOT = Path(__file__).resolve().parents[1]


def naive_forward(w: dict[str, Tensor], alpha: float, tokens: list[int], n_layers: int,
                  act: str) -> tuple[Tensor, list[Tensor]]:
    """The specification's transformer (docs/specification.md), one model and one sequence,
    every position in every block, in explicit loops, float64.

    Returns the logits at the last position and each layer's attention pattern [h, q, k].
    """
    w = {k: v.double() for k, v in w.items()}
    n = len(tokens)
    x = [w["embed.W_E"][t] + w["pos_embed.W_pos"][i] for i, t in enumerate(tokens)]
    patterns = []
    for layer in range(n_layers):
        pre = f"blocks.{layer}."
        w_q, w_k, w_v, w_o = (w[pre + "attn." + k] for k in ("W_Q", "W_K", "W_V", "W_O"))
        h, _, e = w_q.shape
        out = [torch.zeros_like(x[0]) for _ in range(n)]
        pattern = torch.zeros(h, n, n, dtype=torch.float64)
        for head in range(h):
            q = [x[i] @ w_q[head] for i in range(n)]
            k = [x[i] @ w_k[head] for i in range(n)]
            v = [x[i] @ w_v[head] for i in range(n)]
            for i in range(n):  # no causal mask: query i sees every key j
                scores = [float(q[i] @ k[j]) / math.sqrt(e) for j in range(n)]
                top = max(scores)
                ex = [math.exp(s - top) for s in scores]
                soft = [x_ / sum(ex) for x_ in ex]
                for j in range(n):
                    pattern[head, i, j] = alpha * soft[j] + (1 - alpha)
                z = sum(pattern[head, i, j] * v[j] for j in range(n))
                out[i] = out[i] + z @ w_o[head]
        patterns.append(pattern)
        x = [x[i] + out[i] for i in range(n)]
        mlp_out = []
        for i in range(n):
            pre_act = x[i] @ w[pre + "mlp.W_in"] + w[pre + "mlp.b_in"]
            if act == "relu":
                hidden = pre_act.clamp_min(0)
            else:  # exact (erf) GeLU
                hidden = 0.5 * pre_act * (1 + torch.erf(pre_act / math.sqrt(2)))
            mlp_out.append(hidden @ w[pre + "mlp.W_out"] + w[pre + "mlp.b_out"])
        x = [x[i] + mlp_out[i] for i in range(n)]
    return x[-1] @ w["unembed.W_U"], patterns


def shapes(v: int, n_ctx: int, d: int, h: int, n_layers: int) -> dict[str, tuple[int, ...]]:
    e, m = d // h, 4 * d
    out = {"embed.W_E": (v, d), "pos_embed.W_pos": (n_ctx, d), "unembed.W_U": (d, v)}
    for i in range(n_layers):
        out |= {f"blocks.{i}.attn.W_Q": (h, d, e), f"blocks.{i}.attn.W_K": (h, d, e),
                f"blocks.{i}.attn.W_V": (h, d, e), f"blocks.{i}.attn.W_O": (h, e, d),
                f"blocks.{i}.mlp.W_in": (d, m), f"blocks.{i}.mlp.b_in": (m,),
                f"blocks.{i}.mlp.W_out": (m, d), f"blocks.{i}.mlp.b_out": (d,)}
    return out


@pytest.mark.parametrize("n_layers", [1, 2])
@pytest.mark.parametrize("act", ["relu", "gelu"])
@pytest.mark.parametrize("alpha", [0.0, 0.4, 1.0])
def test_the_reference_is_the_specification_written_out(n_layers: int, act: str,
                                                        alpha: float) -> None:
    gen = torch.Generator().manual_seed(n_layers + 10 * len(act))
    # larger than the init scale, biases non-zero: every term of the forward pass matters
    w = {k: torch.randn(s, generator=gen, dtype=torch.float64) * 0.5
         for k, s in shapes(7, 3, 8, 2, n_layers).items()}
    tokens = torch.tensor([[0, 1, 6], [3, 6, 6], [5, 5, 6]])
    got = reference.logits(w, tokens, alpha, act)
    patterns = reference.attention_patterns(w, tokens, alpha, act)
    for i, t in enumerate(tokens.tolist()):
        want, want_patterns = naive_forward(w, alpha, t, n_layers, act)
        torch.testing.assert_close(got[i], want, atol=1e-10, rtol=1e-10)
        for layer in range(n_layers):
            torch.testing.assert_close(patterns[layer][i], want_patterns[layer],
                                       atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize(("runid", "alpha"), [("p99zdpze5l", 0.0), ("l8k1hzciux", 1.0)])
def test_the_reference_solves_the_task_with_the_authors_models(runid: str, alpha: float) -> None:
    # Model A (α = 0) and Model B (α = 1) as released, read into our layout: they add every
    # pair correctly, and the batched model gives the same logits
    run = load_paper_run(ROOT / f"paper/checkpoints/{runid}.safetensors")
    assert run.attn_rate == alpha
    a, b = torch.arange(run.p).repeat_interleave(run.p), torch.arange(run.p).repeat(run.p)
    tokens = encode(a, b, run.p)
    got = reference.logits(run.weights, tokens, alpha)
    assert (got.argmax(-1) == (a + b) % run.p).all()
    torch.testing.assert_close(run.model()(tokens)[0].detach(), got, atol=1e-4, rtol=1e-5)


def test_the_fast_step_gives_each_model_the_reference_gradient() -> None:
    p, rates = 11, [0.0, 0.5, 1.0]
    cfg = TransformerConfig(d_vocab=p, n_ctx=2, d_model=8, n_heads=2, n_layers=1)
    gen = torch.Generator().manual_seed(3)
    models = [{k: torch.randn(s, generator=gen, dtype=torch.float64) * 0.3
               for k, s in shapes(p, 2, 8, 2, 1).items()} for _ in rates]
    batched = BatchedTransformer(cfg, stack(models), rates).double()
    data = SplitTensors.from_table(make_dataset(p, 0.8, 0), p, torch.device("cpu"))
    FastStep(batched, data.x_train, data.y_train)()
    for m, alpha in enumerate(rates):
        w = {k: v.clone().requires_grad_() for k, v in models[m].items()}
        reference.loss(w, data.x_train, data.y_train, alpha).backward()
        for name, param in batched.named_parameters():
            torch.testing.assert_close(param.grad[m], w[name].grad, atol=1e-12, rtol=1e-9)


def test_the_papers_one_model_loop_trains_what_the_batched_trainer_trains() -> None:
    # A dozen steps, α 0 and 1: the same model to float32 rounding (over hundreds of steps
    # AdamW amplifies rounding, so the trajectories are compared where it cannot yet).
    from clockpizza.science.model import init_params
    from clockpizza.science.spec import RunSpec
    from clockpizza.science.train import train_group

    p = 13
    data = SplitTensors.from_table(make_dataset(p, 0.8, 0), p, torch.device("cpu"))
    for alpha in (0.0, 1.0):
        spec = RunSpec(attn_rate=alpha, d_model=16, n_layers=1, n_heads=4, act="relu", p=p,
                       train_frac=0.8, split_seed=0, init_seed=5, steps=12, lr=1e-3,
                       weight_decay=2.0, beta1=0.9, beta2=0.98, eps=1e-8, warmup_steps=10,
                       precision="fp32")
        cfg = TransformerConfig(d_vocab=p, n_ctx=2, d_model=16, n_heads=4, n_layers=1)
        one = reference.train_one(init_params(cfg, spec.weights_seed), spec, data, spec.steps)
        batched = train_group([spec], data, torch.device("cpu"), eval_every=4).model
        moved = 0.0
        for name, value in batched.named_parameters():
            torch.testing.assert_close(one[name], value[0].detach(), atol=2e-6, rtol=1e-5)
            moved = max(moved, float((one[name] - init_params(cfg, 5)[name]).abs().max()))
        assert moved > 1e-3  # it trained: the comparison is not of two starting points
