"""Which network a run is, and how to build one: the one place that knows both model kinds.

The trainer, the run store and the metrics go through these functions, so they work the same for
the batched transformer (:mod:`clockpizza.science.model`) and the attention-free family
(:mod:`clockpizza.science.mlp_family`). Both kinds share one interface:
``forward(tokens [B, n_ctx]) -> [M, B, V]``, ``forward_embedded``, ``embed_tokens``,
``embed.W_E``, ``n_models``, ``model_params(i)`` and an ``attn_rate`` buffer ``[M]`` (NaN for
the attention-free
models).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor

from clockpizza.science.data import context_length, vocab_size
from clockpizza.science.mlp_family import BatchedMLP, MLPConfig
from clockpizza.science.mlp_family import param_shapes as mlp_param_shapes
from clockpizza.science.model import BatchedTransformer, TransformerConfig
from clockpizza.science.model import param_shapes as transformer_param_shapes
from clockpizza.science.spec import TRANSFORMER, RunSpec

ArchConfig = TransformerConfig | MLPConfig
BatchedModel = BatchedTransformer | BatchedMLP


def model_config(spec: RunSpec) -> ArchConfig:
    """The architecture of a run: shapes only, no weights."""
    if spec.family == TRANSFORMER:
        return TransformerConfig(
            d_vocab=vocab_size(spec.p, diff_vocab=spec.diff_vocab, eqn_sign=spec.eqn_sign),
            n_ctx=context_length(eqn_sign=spec.eqn_sign), d_model=spec.d_model,
            n_heads=spec.n_heads, n_layers=spec.n_layers, act=spec.act)
    return MLPConfig(family=spec.family, d_vocab=spec.p, width=spec.d_model)


def param_shapes(cfg: ArchConfig) -> dict[str, tuple[int, ...]]:
    """Per-model parameter names and shapes (what a run's model.safetensors holds)."""
    if isinstance(cfg, TransformerConfig):
        return transformer_param_shapes(cfg)
    return mlp_param_shapes(cfg)


def derived_sizes(cfg: ArchConfig) -> dict[str, int]:
    """Sizes that follow from the config, recorded in each run's config.json."""
    if isinstance(cfg, TransformerConfig):
        return {"d_head": cfg.d_head, "d_mlp": cfg.d_mlp, "d_vocab": cfg.d_vocab,
                "n_ctx": cfg.n_ctx}
    return {"d_embed": cfg.d_embed, "n_hidden": cfg.n_hidden, "d_vocab": cfg.d_vocab,
            "n_ctx": cfg.n_ctx}


def _check_rates(cfg: ArchConfig, attn_rate: Sequence[float | None]) -> list[float]:
    if isinstance(cfg, MLPConfig):
        if any(a is not None and not math.isnan(a) for a in attn_rate):
            raise ValueError(f"model {cfg.family} has no attention: its attention rate must be "
                             "missing (None)")
        return []
    if any(a is None for a in attn_rate):
        raise ValueError("a transformer needs an attention rate")
    return [float(a) for a in attn_rate]  # type: ignore[arg-type]


def init_model(cfg: ArchConfig, seeds: Sequence[int],
               attn_rate: Sequence[float | None]) -> BatchedModel:
    """A batch of freshly initialised models, model i drawn from ``seeds[i]`` alone."""
    rates = _check_rates(cfg, attn_rate)
    if isinstance(cfg, MLPConfig):
        return BatchedMLP.from_seeds(cfg, seeds)
    return BatchedTransformer.from_seeds(cfg, seeds, rates)


def load_model(cfg: ArchConfig, weights: dict[str, Tensor],
               attn_rate: Sequence[float | None]) -> BatchedModel:
    """A batch of models from stacked weights ``{name: [M, ...]}``."""
    rates = _check_rates(cfg, attn_rate)
    if isinstance(cfg, MLPConfig):
        return BatchedMLP(cfg, weights)
    return BatchedTransformer(cfg, weights, rates)
