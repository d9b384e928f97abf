"""The paper's attention-free "linear" models A, B, C, D and X (docs/specification.md, appendix
family).

Width ``h`` (``mlp_family.width``); embeddings ``E [p, h]`` (``[p, h/2]`` for D) with sd 1/√(h/2),
the unembedding ``W_U [h, p]`` with sd 1/√h, hidden ``Linear(h, h)`` layers with bias and ReLU,
``logits = hidden @ W_U`` (W_U is the paper's ``unembed.weight`` transposed, in TransformerLens
orientation like the transformer's):

- A: ``relu(L1(E[a] + E[b]))``                 — embeddings summed (a pizza by construction).
- B: as A, then ``relu(L2(·))``.
- C: ``relu(L1(E[a]) + L1(E[b]))``, then ``relu(L2(·))``.
- D: ``relu(L1(concat(E[a], E[b])))``, embeddings of width h/2.
- X: ``relu(L1(E1[a] + E2[b]))``               — a separate embedding per operand.

Like :class:`~clockpizza.science.model.BatchedTransformer`, every parameter carries a leading model
dimension ``M`` and ``model_params(i)`` is model i's checkpoint. Names in the checkpoint:
``embed.W_E``, ``embed2.W_E`` (X only: the b operand's embedding), ``l1.weight [h, d_in]``,
``l1.bias [h]``, ``l2.weight [h, h]``, ``l2.bias [h]`` (B and C), ``unembed.W_U [h, p]``.

There is no attention: the ``attn_rate`` buffer holds NaN (the rate is missing, not a number) and
serves, as for the transformer, as the handle on the model's device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clockpizza.io.params import MLP_MODELS as FAMILY
from clockpizza.science.model import Batched, split_checked, stack


@dataclass(frozen=True)
class MLPConfig:
    family: str  # one of FAMILY
    d_vocab: int  # p: the operands 0..p-1, and the logits over 0..p-1
    width: int  # h

    def __post_init__(self) -> None:
        if self.family not in FAMILY:
            raise ValueError(f"family {self.family!r}: must be one of {', '.join(FAMILY)}")
        if self.width < 2 or self.width % 2:
            raise ValueError(f"width {self.width}: must be a positive even integer")

    @property
    def n_ctx(self) -> int:
        return 2  # the two operands; no '=' token

    @property
    def d_embed(self) -> int:
        return self.width // 2 if self.family == "D" else self.width

    @property
    def n_hidden(self) -> int:
        """Hidden Linear + ReLU layers: 2 for B and C, 1 otherwise."""
        return 2 if self.family in ("B", "C") else 1


def param_shapes(cfg: MLPConfig) -> dict[str, tuple[int, ...]]:
    """Per-model parameter names and shapes, in the order they are initialised."""
    h, v, e = cfg.width, cfg.d_vocab, cfg.d_embed
    shapes: dict[str, tuple[int, ...]] = {"embed.W_E": (v, e)}
    if cfg.family == "X":
        shapes["embed2.W_E"] = (v, e)
    d_in = 2 * e if cfg.family == "D" else e
    shapes |= {"l1.weight": (h, d_in), "l1.bias": (h,)}
    if cfg.n_hidden == 2:
        shapes |= {"l2.weight": (h, h), "l2.bias": (h,)}
    return shapes | {"unembed.W_U": (h, v)}


def init_params(cfg: MLPConfig, seed: int) -> dict[str, Tensor]:
    """One model's initial weights, drawn on the CPU from ``seed`` alone.

    Embeddings and unembedding are normal with the specification's sd. Paper choice: the Linear
    layers keep
    PyTorch's default ``nn.Linear`` init, which the paper's code used (docs/specification.md states
    only the
    embedding scales): weight and bias uniform on ±1/√fan_in.
    """
    gen = torch.Generator().manual_seed(seed)
    shapes = param_shapes(cfg)
    out = {}
    for name, shape in shapes.items():
        module, leaf = name.rsplit(".", 1)
        if leaf == "W_E":
            out[name] = torch.randn(shape, generator=gen) / math.sqrt(cfg.width / 2)
        elif leaf == "W_U":
            out[name] = torch.randn(shape, generator=gen) / math.sqrt(cfg.width)
        else:  # l1/l2 weight and bias, bound from the layer's fan-in
            bound = 1 / math.sqrt(shapes[f"{module}.weight"][1])
            out[name] = (torch.rand(shape, generator=gen) * 2 - 1) * bound
    return out


class _Weights(nn.Module):
    def __init__(self, params: dict[str, Tensor]) -> None:
        super().__init__()
        for name, value in params.items():
            self.register_parameter(name, nn.Parameter(value))


class BatchedMLP(Batched):
    """M independent models of one family member and width.

    ``forward(tokens [B, 2]) -> logits [M, B, p]``, tokens being the plain operands (a, b).
    """

    def __init__(self, cfg: MLPConfig, params: dict[str, Tensor]) -> None:
        super().__init__()
        self.cfg = cfg
        n_models, groups = split_checked(params, param_shapes(cfg), f"model {cfg.family}")
        for module, leaves in groups.items():
            self.add_module(module, _Weights(leaves))
        # No attention: the rate is missing (NaN), never a number.
        self.register_buffer("attn_rate", torch.full((n_models,), float("nan")))

    @classmethod
    def from_seeds(cls, cfg: MLPConfig, seeds: Sequence[int]) -> BatchedMLP:
        return cls(cfg, stack([init_params(cfg, s) for s in seeds]))

    def embed_tokens(self, tokens: Tensor) -> Tensor:
        """The looked-up embedding rows ``[M, B, 2, d_embed]``: E[a], E[b] (E1[a], E2[b] for X)."""
        if tokens.shape[-1] != 2:
            raise ValueError(f"tokens of shape {tuple(tokens.shape)}: the MLP family reads two "
                             "operands (no '=' token)")
        if self.cfg.family == "X":
            return torch.stack([self.embed.W_E[:, tokens[:, 0]],
                                self.embed2.W_E[:, tokens[:, 1]]], dim=2)
        return self.embed.W_E[:, tokens]

    def forward(self, tokens: Tensor) -> Tensor:
        return self.forward_embedded(self.embed_tokens(tokens))

    def forward_embedded(self, tok_embed: Tensor) -> Tensor:
        """Logits ``[M, B, p]`` from the looked-up rows ``[M, B, 2, d_embed]``."""
        e_a, e_b = tok_embed[:, :, 0], tok_embed[:, :, 1]  # [M, B, d_embed] each
        family = self.cfg.family
        if family == "C":
            x = F.relu(_linear(self.l1, e_a) + _linear(self.l1, e_b))
        elif family == "D":
            x = F.relu(_linear(self.l1, torch.cat([e_a, e_b], dim=-1)))  # [M, B, h]
        else:  # A, B, X
            x = F.relu(_linear(self.l1, e_a + e_b))
        if self.cfg.n_hidden == 2:
            x = F.relu(_linear(self.l2, x))
        return torch.bmm(x, self.unembed.W_U)  # [M, B, p]


def _linear(w: nn.Module, x: Tensor) -> Tensor:
    """``x @ weightᵀ + bias`` per model: ``[M, B, d_in] -> [M, B, h]``."""
    return torch.baddbmm(w.bias[:, None], x, w.weight.transpose(1, 2))
