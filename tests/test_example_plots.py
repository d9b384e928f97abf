"""The Model A / Model B figures draw exactly the example tables, and the report explains them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clockpizza.figures.example_plots import (
    around_circle,
    attention_grid,
    circles_markdown,
    delta_order,
    example_figure,
    logit_grid,
)
from clockpizza.figures.plots import save
from clockpizza.figures.report import examples_section

P = 13
RUN = "0123456789ab"


def tables(role: str = "pizza", k: int = 3) -> dict[str, pd.DataFrame]:
    """Example tables of a constructed pizza: one circle at k on PCs 0-1, an accompanying
    circle at 2k on PCs 2-3, correct logit 2|cos(πkδ/p)|, and attention weights a/(p−1)."""
    t = np.arange(P)
    w = 2 * math.pi * k / P
    pcs = {0: 2 * np.cos(w * t), 1: 2 * np.sin(w * t), 2: np.cos(2 * w * t),
           3: np.sin(2 * w * t)}
    embedding = pd.DataFrame([{"role": role, "run_id": RUN, "token": tok, "pc": pc,
                               "value": v[tok]} for pc, v in pcs.items() for tok in t])
    a, b = np.divmod(np.arange(P * P), P)
    delta = (a - b) % P
    logits = pd.DataFrame({"role": role, "run_id": RUN, "a": a, "b": b, "s": (a + b) % P,
                           "delta": delta,
                           "logit": 2 * np.abs(np.cos(math.pi * k * delta / P)) + 0.01 * a})
    attention = pd.concat([pd.DataFrame({"role": role, "run_id": RUN, "layer": 0, "head": h,
                                         "a": a, "b": b, "key": key,
                                         "weight": (a / (P - 1)) if key == 0 else 1 - a / (P - 1)
                                         + 0.0 * h})
                           for h in range(4) for key in (0, 1)], ignore_index=True)
    circles = pd.DataFrame([
        {"run_id": RUN, "circle": 0, "pc_a": 0, "pc_b": 1, "freq": k, "var_share": 0.8,
         "circularity": 1.0, "fve_clock": 0.75, "fve_pizza": 0.99, "fve_acc": -1.0,
         "fve_clock_centred": 0.76, "fve_pizza_centred": 0.99, "fve_acc_centred": -1.0,
         "type": "pizza"},
        {"run_id": RUN, "circle": 1, "pc_a": 2, "pc_b": 3, "freq": 2 * k, "var_share": 0.2,
         "circularity": 1.0, "fve_clock": -1.0, "fve_pizza": -1.0, "fve_acc": 0.97,
         "fve_clock_centred": -1.0, "fve_pizza_centred": -1.0, "fve_acc_centred": 0.97,
         "type": "accompanying"},
        {"run_id": "another_run_", "circle": 0, "pc_a": 0, "pc_b": 1, "freq": 5,
         "var_share": 0.9, "circularity": 1.0, "fve_clock": 0.99, "fve_pizza": 0.79,
         "fve_acc": -1.0, "fve_clock_centred": 0.99, "fve_pizza_centred": 0.79,
         "fve_acc_centred": -1.0, "type": "clock"},
    ])
    run = pd.Series({"run_id": RUN, "attn_rate": 0.0, "width": 64, "seed": 0,
                     "gradient_symmetricity": 0.99, "distance_irrelevance": 0.35,
                     "phase": "pizza", "n_circles": 2, "dominant_circle_type": "pizza"})
    return {"embedding": embedding, "correct_logits": logits, "attention": attention,
            "circles": circles, "run": run}


def draw(t: dict[str, pd.DataFrame], role: str = "pizza") -> object:
    return example_figure(role, t["embedding"], t["correct_logits"], t["attention"],
                          t["circles"], t["run"])


def test_circle_panels_plot_each_token_at_its_table_coordinates() -> None:
    t = tables()
    fig = draw(t)
    panels = [ax for ax in fig.axes if ax.get_xlabel().startswith("PC")]
    assert len(panels) == 2  # the run's two circles; the other run's circle is not drawn
    emb = t["embedding"]
    for ax, (pc_a, pc_b) in zip(panels, [(0, 1), (2, 3)], strict=True):
        xy = ax.collections[0].get_offsets()
        want_x = emb[emb.pc == pc_a].sort_values("token")["value"].to_numpy()
        want_y = emb[emb.pc == pc_b].sort_values("token")["value"].to_numpy()
        np.testing.assert_array_equal(xy[:, 0], want_x)
        np.testing.assert_array_equal(xy[:, 1], want_y)
        assert ax.get_xlabel() == f"PC {pc_a + 1}" and ax.get_ylabel() == f"PC {pc_b + 1}"
        assert len(ax.texts) == P  # every token is labelled
    assert "k = 3, pizza" in panels[0].get_title() and "pizza 0.99" in panels[0].get_title()
    assert "k = 6, accompanying" in panels[1].get_title()


def test_correct_logit_panel_is_the_table_with_rows_ordered_by_frequency() -> None:
    t = tables(k=3)
    fig = draw(t)
    (ax,) = [ax for ax in fig.axes if ax.get_title() == "correct logit"]
    shown = np.asarray(ax.images[0].get_array())
    lg = t["correct_logits"]
    order = delta_order(P, 3)
    for row, d in enumerate(order):
        want = lg[lg.delta == d].sort_values("s")["logit"].to_numpy()
        np.testing.assert_array_equal(shown[row], want)
    # Ordered by 3δ mod 13 in (−6.5, 6.5]: the pizza's bump |cos(π·3δ/13)| peaks mid-table.
    bump = shown.mean(axis=1)
    assert int(np.argmax(bump)) == P // 2 and order[P // 2] == 0
    assert np.all(np.diff(bump[: P // 2 + 1]) > 0) and np.all(np.diff(bump[P // 2:]) < 0)


def test_attention_panels_show_each_heads_weight_on_a_around_the_circle() -> None:
    t = tables(k=3)
    fig = draw(t)
    heads = [ax for ax in fig.axes if ax.get_title().startswith("head ")]
    assert [ax.get_title() for ax in heads] == [f"head {h}: weight on a" for h in range(4)]
    att = t["attention"]
    ring = around_circle(P, 3)  # the pizza circle's order: 0, 9, 5, 1, ... (3 · 9 ≡ 1)
    assert list(ring[:4]) == [0, 9, 5, 1]
    for h, ax in enumerate(heads):
        shown = np.asarray(ax.images[0].get_array())
        sel = att[(att["head"] == h) & (att["key"] == 0)]
        for i, j in ((0, 0), (1, 2), (3, 7), (12, 5)):
            want = sel[(sel.a == ring[i]) & (sel.b == ring[j])]["weight"].item()
            assert shown[i, j] == want
        np.testing.assert_array_equal(np.sort(shown.ravel()),
                                      np.sort(attention_grid(att, P, h).ravel()))
        assert ax.images[0].get_clim() == (0.0, 1.0)


def test_tables_are_ordered_by_the_largest_circle_of_the_examples_own_type() -> None:
    t = tables(k=3)
    t["circles"].loc[1, "var_share"] = 0.9  # the accompanying circle is now the largest
    fig = draw(t)
    (ax,) = [ax for ax in fig.axes if ax.get_title() == "correct logit"]
    assert ax.get_ylabel() == "a − b, ordered by 3(a − b) mod p"  # still the pizza's k


def test_orders_walk_around_the_circle() -> None:
    ring = around_circle(P, 3)
    assert sorted(ring) == list(range(P))
    assert np.all((3 * np.diff(ring)) % P == 1)  # one notch of 2π/p per step
    assert sorted(delta_order(P, 5)) == list(range(P))
    grid = logit_grid(tables(k=5)["correct_logits"], P, 5)
    assert not np.isnan(grid).any()


@pytest.mark.slow  # seconds per save; the rest of this file never renders
def test_figures_save_byte_stably(tmp_path: Path) -> None:
    t = tables()
    save(draw(t), tmp_path / "one")
    save(draw(t), tmp_path / "two")
    for ext in ("png", "svg"):
        assert (tmp_path / f"one.{ext}").read_bytes() == (tmp_path / f"two.{ext}").read_bytes()
        assert (tmp_path / f"one.{ext}").stat().st_size > 10_000


def test_a_run_without_circles_is_drawn_and_said_so() -> None:
    t = tables()
    t["circles"] = t["circles"][t["circles"].run_id != RUN]
    fig = draw(t)
    assert any(txt.get_text() == "no circle found" for ax in fig.axes for txt in ax.texts)
    assert "no circle found" in circles_markdown(t["circles"], RUN)


def test_missing_rows_are_reported() -> None:
    t = tables(role="pizza")
    with pytest.raises(ValueError, match="no embedding rows for the clock example"):
        draw(t, role="clock")


def test_report_section_names_the_runs_and_tabulates_their_circles() -> None:
    t = tables()
    runs = pd.DataFrame([t["run"], t["run"].copy()])
    runs.iloc[1, runs.columns.get_loc("run_id")] = "another_run_"
    runs.iloc[1, runs.columns.get_loc("attn_rate")] = 1.0
    text = examples_section(runs, t["circles"], {"clock": "another_run_", "pizza": RUN},
                            {"clock": "figures/a.png", "pizza": "figures/b.png"})
    # The authors' naming: Model A is the pizza, Model B the clock.
    assert text.index("### Model A (pizza)") < text.index("### Model B (clock)")
    assert "**Ours:** run `0123456789ab` (α = 0" in text
    assert "**Ours:** run `another_run_` (α = 1" in text
    assert "![Model A](figures/b.png)" in text
    # Circle 2 of Model B, with the components numbered from 1.
    assert "| 2 | 3, 4 | 6 | 0.200 | 1.000 | -1.000 | -1.000 | 0.970 | accompanying |" in text
