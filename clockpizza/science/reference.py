"""The reference transformer: one model, one batch of sequences, every position in every block,
written to be read top to bottom (docs/specification.md, "Model").

This is the executable specification. Nothing trains with it: the pipeline trains many models
at once (:class:`clockpizza.science.model.BatchedTransformer`, and the hand-written step of
:mod:`clockpizza.science.fast`), and the benchmark's one-model-at-a-time loop stands for the
paper's own code. Each of those, and the TransformerLens export, is tested against this module
(tests/test_reference.py, tests/test_fast_step.py, tests/test_interop.py).

Weights are one model's ``{name: tensor}`` under TransformerLens names and shapes, exactly what a
run's ``model.safetensors`` holds (:func:`clockpizza.science.model.param_shapes`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


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
