"""The example runs of figure 3 are the ones the params ask for, and their tables hold what the
model computes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from clockpizza.analysis.mechanism import choose_examples, example_tables
from clockpizza.io.params import ParamsError, RenderConfig
from clockpizza.io.table import EXAMPLE_TABLES
from clockpizza.science.model import BatchedTransformer, TransformerConfig, init_params, stack

P = 7




def grid() -> pd.DataFrame:
    rows = []
    for width in (32, 64, 256):
        for seed in (0, 1):
            for alpha in (0.0, 0.5, 1.0):
                phase = "pizza" if alpha < 0.7 else "clock"
                if (width, seed, alpha) == (64, 0, 0.0):
                    phase = "non-circular"
                rows.append({"run_id": rid(width, seed, alpha), "width": width, "seed": seed,
                             "attn_rate": alpha, "n_layers": 1, "phase": phase})
    return pd.DataFrame(rows)


def rid(width: int, seed: int, alpha: float) -> str:
    """A 12-hex-digit run id that reads as its grid point: width, seed, α in tenths."""
    return f"{width:06x}{seed:03x}{round(alpha * 10):03x}"


def render(clock: str | None = None, pizza: str | None = None,
           width: int = 128) -> RenderConfig:
    return RenderConfig(fig1_width=width, clock_run_id=clock, pizza_run_id=pizza)


def test_default_examples_are_at_the_ends_of_the_grid_at_the_figure_1_width() -> None:
    # Width 128 is nearest 64 and 256 on a log scale alike: the larger wins (plots.nearest_width).
    assert choose_examples(grid(), render(width=128)) == {"clock": rid(256, 0, 1.0),
                                                          "pizza": rid(256, 0, 0.0)}
    # At width 64 the seed-0 run at α = 0 is not a pizza: the seed-1 run stands in.
    assert choose_examples(grid(), render(width=64)) == {"clock": rid(64, 0, 1.0),
                                                         "pizza": rid(64, 1, 0.0)}


def test_examples_named_in_params_are_used_and_must_exist() -> None:
    got = choose_examples(grid(), render(clock=rid(32, 1, 0.5)))
    assert got == {"clock": rid(32, 1, 0.5), "pizza": rid(256, 0, 0.0)}
    with pytest.raises(ParamsError, match=r"render\.pizza_run_id = 'abcdefabcdef'"):
        choose_examples(grid(), render(pizza="abcdefabcdef"))


def test_example_tables_hold_what_the_model_computes() -> None:
    cfg = TransformerConfig(d_vocab=P, n_ctx=2, d_model=8, n_heads=4, n_layers=1)
    w = init_params(cfg, 0)
    model = BatchedTransformer(cfg, stack([w]), [0.5])
    tables = example_tables(model, P, "pizza", "run000000000", n_pcs=4)
    assert set(tables) == set(EXAMPLE_TABLES)
    for name, df in tables.items():
        assert set(EXAMPLE_TABLES[name].names) <= set(df.columns)
        assert (df["role"] == "pizza").all() and (df["run_id"] == "run000000000").all()

    logits = tables["correct_logits"]
    assert len(logits) == P * P
    with torch.no_grad():
        for row in logits.sample(10, random_state=0).itertuples():
            out = model(torch.tensor([[row.a, row.b]]))[0, 0]
            assert row.logit == pytest.approx(out[(row.a + row.b) % P].item(), abs=1e-5)
            assert row.s == (row.a + row.b) % P and row.delta == (row.a - row.b) % P

    att = tables["attention"]
    assert len(att) == 4 * P * P * 2  # heads × pairs × keys
    # α = 0.5: each weight is 0.5 · softmax + 0.5, so the two keys of a query sum to 1.5.
    sums = att.groupby(["head", "a", "b"])["weight"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.5, atol=1e-6)
    assert att["weight"].between(0.5, 1.0).all()

    emb = tables["embedding"].pivot(index="token", columns="pc", values="value")
    x = w["embed.W_E"][:P].double().numpy()
    _, s, _ = np.linalg.svd(x - x.mean(axis=0))
    # Each stored component has the variance of the corresponding singular value.
    np.testing.assert_allclose((emb.to_numpy() ** 2).sum(axis=0), s[:4] ** 2, rtol=1e-9)
