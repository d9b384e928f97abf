"""A saved run as a TransformerLens HookedTransformer computes exactly what our model computes.

Skipped when TransformerLens (the optional extra ``tl``) is not installed; CI installs it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

tl = pytest.importorskip("transformer_lens")
if not hasattr(tl, "HookedTransformerConfig"):
    pytest.skip("TransformerLens >= 4 has no HookedTransformer", allow_module_level=True)

from clockpizza.io.store import write_run  # noqa: E402
from clockpizza.science import reference  # noqa: E402
from clockpizza.science.data import all_pairs, encode  # noqa: E402
from clockpizza.science.model import (  # noqa: E402
    BatchedTransformer,
    TransformerConfig,
    init_params,
    stack,
)
from clockpizza.science.runs import run_config  # noqa: E402
from clockpizza.science.spec import RunSpec  # noqa: E402
from clockpizza.tools.interop import hooked_from_weights, to_hooked_transformer  # noqa: E402

P = 11


def assert_close(got: torch.Tensor, want: torch.Tensor, atol: float) -> None:
    # np.testing rather than torch.testing: the latter imports torch.distributed (seconds).
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), atol=atol, rtol=0)




def trained_looking(cfg: TransformerConfig, seed: int) -> dict[str, torch.Tensor]:
    """Random weights, with non-zero MLP biases and larger attention weights so that softmax
    patterns are far from uniform and a missing bias or a wrong scale would show."""
    w = init_params(cfg, seed)
    gen = torch.Generator().manual_seed(100 + seed)
    for name in w:
        leaf = name.rsplit(".", 1)[-1]
        if leaf.startswith("b_"):
            w[name] = 0.3 * torch.randn(w[name].shape, generator=gen)
        if leaf in ("W_Q", "W_K"):
            w[name] = 4 * w[name]
    return w


@pytest.mark.parametrize(("n_layers", "act"), [(1, "relu"), (2, "gelu")])
@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0])
def test_same_logits_as_the_reference_model_on_every_pair(n_layers: int, act: str,
                                                          rate: float) -> None:
    cfg = TransformerConfig(d_vocab=P, n_ctx=2, d_model=16, n_heads=4, n_layers=n_layers,
                            act=act)
    weights = trained_looking(cfg, seed=n_layers)
    hooked = hooked_from_weights(weights, cfg, rate)
    tokens = encode(*all_pairs(P), P)
    with torch.no_grad():
        want = reference.logits(weights, tokens, rate, act)  # [p², V]
        got = hooked(tokens)[:, -1]  # last position
    assert got.shape == want.shape == (P * P, P)
    assert_close(got, want, atol=1e-4)
    assert want.std() > 0.1  # the comparison is not between two near-constant tensors


def test_the_attention_rate_reaches_the_cached_pattern() -> None:
    cfg = TransformerConfig(d_vocab=P, n_ctx=2, d_model=16, n_heads=4, n_layers=1)
    weights = trained_looking(cfg, seed=3)
    tokens = encode(*all_pairs(P), P)
    for rate in (0.0, 0.25, 1.0):
        hooked = hooked_from_weights(weights, cfg, rate)
        with torch.no_grad():
            _, cache = hooked.run_with_cache(tokens)
            want = BatchedTransformer(cfg, stack([weights]), [rate]).attention_pattern(tokens)
        pattern = cache["blocks.0.attn.hook_pattern"]  # [batch, head, query, key]
        assert_close(pattern, want[0], atol=1e-5)
        # At α = 0 each position gets weight 1: the rows sum to n_ctx, not 1
        # (docs/specification.md).
        assert pattern.sum(-1).mean().item() == pytest.approx(2 - rate * 1.0, abs=1e-5)
        hooked.reset_hooks()  # the rate is a permanent hook: it survives a reset
        with torch.no_grad():
            again = hooked(tokens)[:, -1]
            ours = BatchedTransformer(cfg, stack([weights]), [rate])(tokens)[0]
        assert_close(again, ours, atol=1e-4)


def test_a_saved_run_directory_opens_as_a_hooked_transformer(tmp_path: Path) -> None:
    spec = RunSpec(attn_rate=0.5, d_model=16, n_layers=1, n_heads=4, act="relu", p=P,
                   train_frac=0.8, split_seed=0, init_seed=0, steps=1, lr=1e-3,
                   weight_decay=2.0, beta1=0.9, beta2=0.98, eps=1e-8, warmup_steps=10,
                   precision="fp32")
    cfg = TransformerConfig(d_vocab=P, n_ctx=2, d_model=16, n_heads=4, n_layers=1)
    weights = trained_looking(cfg, seed=5)
    run_dir = tmp_path / spec.run_id
    history = pd.DataFrame({"step": [0], "train_loss": [1.0], "test_loss": [1.0],
                            "train_acc": [0.0], "test_acc": [0.0]})
    write_run(run_dir, weights, run_config(spec, cfg, width=16, seed=0, device="cpu",
                                           eval_every=1), history)
    hooked = to_hooked_transformer(run_dir)
    assert hooked.attn_rate == 0.5
    tokens = encode(*all_pairs(P), P)
    with torch.no_grad():
        assert_close(hooked(tokens)[:, -1],
                     BatchedTransformer(cfg, stack([weights]), [0.5])(tokens)[0], atol=1e-4)


def test_weights_of_another_shape_are_refused() -> None:
    cfg = TransformerConfig(d_vocab=P, n_ctx=2, d_model=16, n_heads=4, n_layers=1)
    weights = init_params(cfg, 0)
    weights["embed.W_E"] = weights["embed.W_E"][:-1]
    with pytest.raises(ValueError, match="do not match"):
        hooked_from_weights(weights, cfg, 1.0)
