"""The reference transformer: one model, one batch of sequences, every position in every block,
written to be read top to bottom (docs/specification.md, "Model").

This is the executable specification. The pipeline never trains with it: it trains many models
at once (:class:`clockpizza.science.model.BatchedTransformer`, and the hand-written step of
:mod:`clockpizza.science.fast`); :func:`train_one` is the paper's one-model-at-a-time loop, which
the benchmark times and the mid-α study runs as a control. Each of those, and the
TransformerLens export, is tested against this module (tests/test_reference.py,
tests/test_interop.py).

Weights are one model's ``{name: tensor}`` under TransformerLens names and shapes, exactly what a
run's ``model.safetensors`` holds (:func:`clockpizza.science.model.param_shapes`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:  # types only: the model itself imports nothing of the project
    from clockpizza.science.spec import RunSpec
    from clockpizza.science.train import SplitTensors


def attention(x: Tensor, w: dict[str, Tensor], attn_rate: float) -> tuple[Tensor, Tensor]:
    """One attention layer without biases or a mask, with the attention rate α.

    ``x [batch, pos, d_model]`` -> (the layer's output ``[batch, pos, d_model]``, its pattern
    ``[batch, head, query, key]``).
    """
    d_head = w["W_Q"].shape[-1]
    q = torch.einsum("bpd,hde->bhpe", x, w["W_Q"])  # [batch, head, pos, d_head]
    k = torch.einsum("bpd,hde->bhpe", x, w["W_K"])
    v = torch.einsum("bpd,hde->bhpe", x, w["W_V"])
    scores = q @ k.transpose(-1, -2) / math.sqrt(d_head)  # [batch, head, query, key]; no mask
    # Paper choice: the constant 1 - α is added to every entry, so at α = 0 every position is
    # weighed by 1 and the pattern sums to n_ctx, not 1: the layer ignores the tokens' content.
    pattern = attn_rate * scores.softmax(dim=-1) + (1 - attn_rate)
    z = pattern @ v  # [batch, head, pos, d_head]
    out = torch.einsum("bhpe,hed->bpd", z, w["W_O"])  # [batch, pos, d_model]
    return out, pattern


def mlp(x: Tensor, w: dict[str, Tensor], act: str) -> Tensor:
    """``x [batch, pos, d_model]`` -> ``act(x W_in + b_in) W_out + b_out``, same shape."""
    pre = x @ w["W_in"] + w["b_in"]  # [batch, pos, d_mlp]
    hidden = F.relu(pre) if act == "relu" else F.gelu(pre)
    return hidden @ w["W_out"] + w["b_out"]


def _block(weights: dict[str, Tensor], i: int, part: str) -> dict[str, Tensor]:
    prefix = f"blocks.{i}.{part}."
    return {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}


def n_layers(weights: dict[str, Tensor]) -> int:
    """The number of blocks the weights hold."""
    return len({k.split(".")[1] for k in weights if k.startswith("blocks.")})


def residual(weights: dict[str, Tensor], tok_embed: Tensor, attn_rate: float,
             act: str = "relu") -> Tensor:
    """The residual stream after the last block, ``[batch, pos, d_model]``, from the looked-up
    embedding rows ``W_E[tokens]`` (``[batch, pos, d_model]``; the metrics differentiate with
    respect to them)."""
    x = tok_embed + weights["pos_embed.W_pos"]  # [batch, pos, d_model]
    for i in range(n_layers(weights)):
        x = x + attention(x, _block(weights, i, "attn"), attn_rate)[0]
        x = x + mlp(x, _block(weights, i, "mlp"), act)
    return x


def logits(weights: dict[str, Tensor], tokens: Tensor, attn_rate: float,
           act: str = "relu") -> Tensor:
    """The prediction: logits at the last position, ``tokens [batch, pos]`` ->
    ``[batch, d_vocab]``."""
    x = residual(weights, weights["embed.W_E"][tokens], attn_rate, act)
    return x[:, -1] @ weights["unembed.W_U"]


def loss(weights: dict[str, Tensor], tokens: Tensor, labels: Tensor, attn_rate: float,
         act: str = "relu") -> Tensor:
    """Mean cross entropy of the last-position logits, in float64.

    Paper choice: in float32 the loss of a confident model is quantised to multiples of ~1.2e-7,
    which shows as loss spikes late in training.
    """
    return F.cross_entropy(logits(weights, tokens, attn_rate, act).double(), labels)


def attention_patterns(weights: dict[str, Tensor], tokens: Tensor, attn_rate: float,
                       act: str = "relu") -> list[Tensor]:
    """Every layer's pattern ``[batch, head, query, key]``, in order."""
    x = weights["embed.W_E"][tokens] + weights["pos_embed.W_pos"]
    out = []
    for i in range(n_layers(weights)):
        y, pattern = attention(x, _block(weights, i, "attn"), attn_rate)
        out.append(pattern)
        x = x + y
        x = x + mlp(x, _block(weights, i, "mlp"), act)
    return out


def train_one(weights: dict[str, Tensor], spec: RunSpec, data: SplitTensors, steps: int,
              on_step: Callable[[], None] | None = None) -> dict[str, Tensor]:
    """The paper's procedure, one model at a time: full-batch AdamW with the linear warm-up,
    and after every step the test loss evaluated and both losses read back to the host, as the
    paper's code logged them. Trains ``weights`` (one model's, on the data's device) in place
    and returns them. The benchmark times it against the batched trainer; the mid-α study uses
    it as a control."""
    params = {k: v.detach().clone().requires_grad_() for k, v in weights.items()}
    opt = torch.optim.AdamW(params.values(), lr=spec.lr, betas=(spec.beta1, spec.beta2),
                            eps=spec.eps, weight_decay=spec.weight_decay)
    warm = spec.warmup_steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: min(t / warm, 1.0) if warm else 1.0)
    alpha = float(spec.attn_rate if spec.attn_rate is not None else 1.0)
    for _ in range(steps):
        train = loss(params, data.x_train, data.y_train, alpha, spec.act)
        opt.zero_grad()
        train.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            test = loss(params, data.x_test, data.y_test, alpha, spec.act)
        train.item(), test.item()
        if on_step is not None:
            on_step()
    return {k: v.detach() for k, v in params.items()}
