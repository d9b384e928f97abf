"""A batch of small transformers with an attention rate α (docs/specification.md, "Model").

Every parameter carries a leading model dimension ``M``: one module holds a whole group of models
of the same shape, each with its own α, and one forward/backward trains all of them. Parameter
names and per-model shapes follow TransformerLens (``embed.W_E [d_vocab, d_model]``,
``blocks.0.attn.W_Q [n_heads, d_model, d_head]``, ...), so a model's ``state_dict`` sliced at
index i is that model's checkpoint. The module knows nothing of files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class TransformerConfig:
    d_vocab: int
    n_ctx: int
    d_model: int
    n_heads: int
    n_layers: int
    act: str = "relu"

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def d_mlp(self) -> int:
        return 4 * self.d_model


def param_shapes(cfg: TransformerConfig) -> dict[str, tuple[int, ...]]:
    """Per-model parameter names and shapes, in the order they are initialised."""
    d, h, e, m, v = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp, cfg.d_vocab
    shapes: dict[str, tuple[int, ...]] = {"embed.W_E": (v, d), "pos_embed.W_pos": (cfg.n_ctx, d)}
    for i in range(cfg.n_layers):
        shapes |= {
            f"blocks.{i}.attn.W_Q": (h, d, e),
            f"blocks.{i}.attn.W_K": (h, d, e),
            f"blocks.{i}.attn.W_V": (h, d, e),
            f"blocks.{i}.attn.W_O": (h, e, d),
            f"blocks.{i}.mlp.W_in": (d, m),
            f"blocks.{i}.mlp.b_in": (m,),
            f"blocks.{i}.mlp.W_out": (m, d),
            f"blocks.{i}.mlp.b_out": (d,),
        }
    return shapes | {"unembed.W_U": (d, v)}


def init_std(cfg: TransformerConfig, name: str) -> float:
    """Initial standard deviation of a parameter (docs/specification.md); biases start at 0."""
    leaf = name.rsplit(".", 1)[-1]
    if leaf.startswith("b_"):
        return 0.0
    if leaf == "W_in":
        return 1 / math.sqrt(cfg.d_mlp)
    if leaf == "W_U":
        return 1 / math.sqrt(cfg.d_vocab)
    return 1 / math.sqrt(cfg.d_model)  # W_E, W_pos, W_Q, W_K, W_V, W_O, W_out


def init_params(cfg: TransformerConfig, seed: int) -> dict[str, Tensor]:
    """One model's initial weights, drawn on the CPU from ``seed`` alone.

    Drawing on the CPU, one model at a time, makes a model's start independent of the device and
    of which other models share its group.
    """
    gen = torch.Generator().manual_seed(seed)
    return {
        name: torch.randn(shape, generator=gen) * init_std(cfg, name)
        for name, shape in param_shapes(cfg).items()
    }


class _Weights(nn.Module):
    """A namespace of parameters, so state_dict keys read ``blocks.0.attn.W_Q``."""

    def __init__(self, params: dict[str, Tensor]) -> None:
        super().__init__()
        for name, value in params.items():
            self.register_parameter(name, nn.Parameter(value))


def split_checked(params: dict[str, Tensor], expected: dict[str, tuple[int, ...]],
                  what: str) -> tuple[int, dict[str, dict[str, Tensor]]]:
    """Check stacked weights against per-model ``expected`` shapes; group them by module.

    Returns the number of models and ``{module: {leaf: tensor}}`` in the order of ``expected``.
    """
    if set(params) != set(expected):
        raise ValueError(f"parameter names {sorted(set(params) ^ set(expected))} do not "
                         f"match {what}")
    n_models = next(iter(params.values())).shape[0]
    groups: dict[str, dict[str, Tensor]] = {}
    for name, shape in expected.items():
        if tuple(params[name].shape) != (n_models, *shape):
            raise ValueError(f"{name}: shape {tuple(params[name].shape)}, expected "
                             f"{(n_models, *shape)}")
        module, leaf = name.rsplit(".", 1)
        groups.setdefault(module, {})[leaf] = params[name]
    return n_models, groups


class Batched(nn.Module):
    """What every batched model shares: each parameter carries a leading model dimension M,
    and an ``attn_rate`` buffer ``[M]`` (NaN for models without attention) sits on the device."""

    attn_rate: Tensor

    @property
    def n_models(self) -> int:
        return int(self.attn_rate.shape[0])

    def model_params(self, i: int) -> dict[str, Tensor]:
        """Model i's weights under their saved names, detached, contiguous, on CPU."""
        return {k: v[i].detach().cpu().contiguous() for k, v in self.named_parameters()}


class BatchedTransformer(Batched):
    """M independent transformers of one shape, each with its own attention rate.

    ``forward(tokens [B, n_ctx]) -> logits [M, B, d_vocab]`` at the last position.
    """

    def __init__(self, cfg: TransformerConfig, params: dict[str, Tensor],
                 attn_rate: Sequence[float] | Tensor) -> None:
        super().__init__()
        self.cfg = cfg
        n_models, groups = split_checked(params, param_shapes(cfg), "the config")
        self.embed = _Weights(groups["embed"])
        self.pos_embed = _Weights(groups["pos_embed"])
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"attn": _Weights(groups[f"blocks.{i}.attn"]),
                           "mlp": _Weights(groups[f"blocks.{i}.mlp"])})
            for i in range(cfg.n_layers)
        )
        self.unembed = _Weights(groups["unembed"])
        rate = torch.as_tensor(attn_rate, dtype=torch.float32)
        if rate.shape != (n_models,):
            raise ValueError(f"attn_rate has shape {tuple(rate.shape)}, expected ({n_models},)")
        self.register_buffer("attn_rate", rate)

    @classmethod
    def from_seeds(cls, cfg: TransformerConfig, seeds: Sequence[int],
                   attn_rate: Sequence[float]) -> BatchedTransformer:
        return cls(cfg, stack([init_params(cfg, s) for s in seeds]), attn_rate)

    # ---------------------------------------------------------------------------------------

    def embed_tokens(self, tokens: Tensor) -> Tensor:
        """The looked-up token-embedding rows ``W_E[tokens]``, ``[M, B, n_ctx, d]``."""
        return self.embed.W_E[:, tokens]

    def forward(self, tokens: Tensor) -> Tensor:
        return self.forward_embedded(self.embed_tokens(tokens))

    def forward_embedded(self, tok_embed: Tensor) -> Tensor:
        """Logits at the last position from token embeddings ``[M, B, n_ctx, d]``.

        Taking the looked-up rows as input lets metrics differentiate with respect to them.
        """
        x = tok_embed + self.pos_embed.W_pos[:, None]  # [M, B, n_ctx, d]
        n = len(self.blocks)
        for i, block in enumerate(self.blocks):
            last = i == n - 1
            # Only the last position reaches the loss, so in the last block queries and the MLP
            # are needed there alone: exact, not an approximation (tested).
            x = (x[:, :, -1:] if last else x) + self._attn(block["attn"], x, last_only=last)
            x = x + self._mlp(block["mlp"], x)
        return torch.bmm(x[:, :, -1], self.unembed.W_U)  # [M, B, d_vocab]

    def _attn(self, w: nn.Module, x: Tensor, *, last_only: bool,
              return_pattern: bool = False) -> Tensor:
        m, b, n, d = x.shape
        h, e = self.cfg.n_heads, self.cfg.d_head
        xq = x[:, :, -1:] if last_only else x
        n_q = xq.shape[2]
        # [M, h, d, e] -> [M, d, h*e], so each projection is one batched matmul per model.
        w_q, w_k, w_v = (t.permute(0, 2, 1, 3).reshape(m, d, h * e) for t in (w.W_Q, w.W_K, w.W_V))
        kv = torch.bmm(x.reshape(m, b * n, d), torch.cat([w_k, w_v], dim=-1))
        k, v = kv.view(m, b, n, 2, h, e).unbind(dim=3)  # [M, B, n, h, e] each
        q = torch.bmm(xq.reshape(m, b * n_q, d), w_q).view(m, b, n_q, 1, h, e)
        # n_ctx is 2 or 3: broadcast products beat a batched matmul over M·B·h tiny matrices.
        scores = (q * k.unsqueeze(2)).sum(dim=-1) / math.sqrt(e)  # [M, B, q, k, h]; no mask
        rate = self.attn_rate.view(m, 1, 1, 1, 1)
        # Paper choice: the constant (1 - α) is added to every entry, so at α = 0 each position
        # gets weight 1 and the weights sum to n_ctx (not 1): attention becomes a plain sum.
        pattern = rate * scores.softmax(dim=3) + (1 - rate)  # [M, B, q, k, h]
        if return_pattern:
            return pattern.permute(0, 1, 4, 2, 3)  # [M, B, h, q, k]
        z = (pattern.unsqueeze(-1) * v.unsqueeze(2)).sum(dim=3)  # [M, B, q, h, e]
        w_o = w.W_O.reshape(m, h * e, d)  # [M, h*e, d]
        return torch.bmm(z.reshape(m, b * n_q, h * e), w_o).view(m, b, n_q, d)

    def _mlp(self, w: nn.Module, x: Tensor) -> Tensor:
        m, b, q, d = x.shape
        pre = torch.baddbmm(w.b_in[:, None], x.reshape(m, b * q, d), w.W_in)  # [M, B*q, d_mlp]
        act = F.relu(pre) if self.cfg.act == "relu" else F.gelu(pre)
        return torch.baddbmm(w.b_out[:, None], act, w.W_out).view(m, b, q, d)

    def attention_pattern(self, tokens: Tensor, layer: int = 0) -> Tensor:
        """Attention pattern ``[M, B, n_heads, n_ctx, n_ctx]`` of one layer, all positions."""
        if not 0 <= layer < len(self.blocks):
            raise ValueError(f"layer {layer} out of range (model has {len(self.blocks)})")
        x = self.embed.W_E[:, tokens] + self.pos_embed.W_pos[:, None]
        for block in self.blocks[:layer]:
            x = x + self._attn(block["attn"], x, last_only=False)
            x = x + self._mlp(block["mlp"], x)
        return self._attn(self.blocks[layer]["attn"], x, last_only=False, return_pattern=True)


def stack(models: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Stack per-model weight dicts along a new leading model dimension."""
    if not models:
        raise ValueError("no models to stack")
    return {k: torch.stack([mdl[k] for mdl in models]) for k in models[0]}


def cross_entropy64(logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean cross entropy per model, ``[M, B, V], [B] -> [M]``, computed in float64.

    Paper choice: in float32 the loss of a confident model underflows to multiples of ~1.2e-7,
    which causes loss spikes late in training; log_softmax in float64 avoids it. ``mask``
    (``[M, B]``, bool) restricts each model's mean to its own examples (a split per run).
    """
    logp = logits.double().log_softmax(dim=-1)  # [M, B, V]
    idx = labels.view(1, -1, 1).expand(logp.shape[0], -1, 1)
    nll = -logp.gather(-1, idx).squeeze(-1)  # [M, B]
    if mask is None:
        return nll.mean(dim=-1)
    return (nll * mask).sum(dim=-1) / mask.sum(dim=-1)
