"""Any saved run as a TransformerLens ``HookedTransformer``, for the interpretability toolbox.

TransformerLens is an optional extra (``pip install -e ".[tl]"``): HookedTransformer exists in
TransformerLens 2.x and 3.x; 4.0 removed it in favour of TransformerBridge. Our parameter names
and per-model shapes are TransformerLens's (``embed.W_E``, ``blocks.0.attn.W_Q [n_heads,
d_model, d_head]``, ...); the biases we do not have (``b_Q, b_K, b_V, b_O, b_U``) are zero.

The attention rate α has no TransformerLens setting: it is applied by a permanent hook on
``blocks.{i}.attn.hook_pattern`` that maps the softmax pattern A to ``α · A + (1 − α)``
(docs/specification.md, "Model"), so ``run_with_cache`` and every other hook see the pattern the
model
actually uses. Everything else is TransformerLens's own computation: scores divided by
``√d_head``, no causal mask (``attention_dir="bidirectional"``), no LayerNorm.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from clockpizza.science.model import TransformerConfig, param_shapes
from clockpizza.science.runs import open_run

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer


def _transformer_lens() -> Any:
    try:
        import transformer_lens
    except ImportError as e:
        raise ImportError("clockpizza.tools.interop needs TransformerLens: "
                          "pip install -e \".[tl]\" (transformer-lens>=2,<4)") from e
    if not hasattr(transformer_lens, "HookedTransformerConfig"):
        raise ImportError("TransformerLens 4.0 removed HookedTransformer; "
                          "pip install \"transformer-lens>=2,<4\"")
    return transformer_lens


def hooked_config(cfg: TransformerConfig) -> Any:
    """The ``HookedTransformerConfig`` of a model of ours (no LayerNorm, no mask)."""
    tl = _transformer_lens()
    return tl.HookedTransformerConfig(
        n_layers=cfg.n_layers, d_model=cfg.d_model, d_head=cfg.d_head, n_heads=cfg.n_heads,
        d_mlp=cfg.d_mlp, d_vocab=cfg.d_vocab, d_vocab_out=cfg.d_vocab, n_ctx=cfg.n_ctx,
        act_fn=cfg.act,  # "relu" / "gelu": TransformerLens's gelu is exact, as torch's default
        normalization_type=None, attn_only=False, positional_embedding_type="standard",
        attention_dir="bidirectional", use_attn_scale=True,  # scale √d_head, as ours
        default_prepend_bos=False, init_weights=False,
    )


def hooked_from_weights(weights: Mapping[str, Tensor], cfg: TransformerConfig,
                        attn_rate: float) -> HookedTransformer:
    """A ``HookedTransformer`` with one model's weights (our names, per-model shapes) and α."""
    if not 0.0 <= attn_rate <= 1.0:
        raise ValueError(f"attn_rate = {attn_rate}: must be in [0, 1]")
    expected = param_shapes(cfg)
    got = {k: tuple(v.shape) for k, v in weights.items()}
    if got != expected:
        raise ValueError(f"weights do not match the config: {sorted(set(got) ^ set(expected))} "
                         "differ in name, or some shape differs")
    tl = _transformer_lens()
    with warnings.catch_warnings():
        # 3.x announces the 4.0 removal; this module pins transformer-lens < 4 on purpose.
        warnings.filterwarnings("ignore", "HookedTransformer is deprecated",
                                DeprecationWarning)
        model = tl.HookedTransformer(hooked_config(cfg))
    state = model.state_dict()
    for name, value in state.items():
        if name in weights:
            if tuple(value.shape) != tuple(weights[name].shape):
                raise ValueError(f"{name}: TransformerLens expects {tuple(value.shape)}, "
                                 f"the run has {tuple(weights[name].shape)}")
            state[name] = weights[name].detach().to(value.dtype).clone()
        elif name.rsplit(".", 1)[-1].startswith("b_"):
            state[name] = torch.zeros_like(value)  # a bias our models do not have
    missing = set(weights) - set(state)
    if missing:
        raise ValueError(f"TransformerLens has no parameters named {sorted(missing)}")
    model.load_state_dict(state, strict=True)

    def apply_rate(pattern: Tensor, hook: Any) -> Tensor:
        # Paper choice: the constant (1 − α) is added to every entry, so at α = 0 the weights
        # sum to n_ctx, not 1 (docs/specification.md).
        return attn_rate * pattern + (1.0 - attn_rate)

    for i in range(cfg.n_layers):
        model.add_hook(f"blocks.{i}.attn.hook_pattern", apply_rate, is_permanent=True)
    model.attn_rate = attn_rate  # type: ignore[attr-defined]  # recorded for the user
    model.eval()
    return model


def to_hooked_transformer(run_dir: str | Path) -> HookedTransformer:
    """The saved run in ``run_dir`` (``runs/<group>/<run_id>``) as a ``HookedTransformer``.

    Tokens are ``[a, b]`` (see :func:`clockpizza.science.data.encode`); the prediction is the
    logits at the last position: ``model(tokens)[:, -1]``.
    """
    run, cfg = open_run(Path(run_dir))  # checks every file and shape
    return hooked_from_weights(run.weights, cfg, float(run.config["attn_rate"]))
