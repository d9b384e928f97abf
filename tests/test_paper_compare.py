"""Our runs against the paper's published ones (paper/published_runs_fixed_width.csv, MIT)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clockpizza.io.params import PhaseConfig
from clockpizza.results.paper_compare import (
    alpha_tenth,
    at_most_chance,
    match_chance,
    medians_by_width,
    paper_block,
    published_phase_shares,
    published_phases,
    read_published_runs,
    tenth_table,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def published() -> pd.DataFrame:
    return read_published_runs(ROOT / "paper/published_runs_fixed_width.csv")


def as_our_runs(published: pd.DataFrame, **shift: float) -> pd.DataFrame:
    """The paper's runs written as a runs table of ours (one layer, no ablations)."""
    df = published.assign(family="transformer", n_layers=1, diff_vocab=False, eqn_sign=False,
                          seed=0, phase="pizza")
    for col, by in shift.items():
        df[col] = df[col] + by
    return df


def test_the_papers_fixed_width_runs_are_the_2381_with_metrics(published: pd.DataFrame) -> None:
    # paper/README.md: 2 381 one-layer runs without ablations have metrics, all at width 128.
    assert len(published) == 2381
    assert set(published["width"]) == {128}
    assert published["attn_rate"].between(0, 1).all()


def test_the_papers_medians_show_pizza_below_and_clock_above_the_transition(
        published: pd.DataFrame) -> None:
    table = tenth_table(as_our_runs(published), published, 128)
    assert (table["paper_runs"] > 100).all()
    assert (table.loc[table["tenth"] <= 4, "paper_gs_median"] > 0.98).all()  # pizzas
    assert table.loc[table["tenth"] == 9, "paper_gs_median"].item() < 0.6  # clocks
    assert table.loc[table["tenth"] == 9, "paper_di_median"].item() > 0.8
    assert table["within"].all()  # the paper against itself


def test_the_paper_block_counts_tenths_within_tolerance(published: pd.DataFrame) -> None:
    assert paper_block(as_our_runs(published), published)["share_within"] == 1.0
    # GS 0.2 lower everywhere: within 0.10 in no tenth.
    far = paper_block(as_our_runs(published, gradient_symmetricity=-0.2), published)
    assert far["share_within"] == 0.0 and far["tenths_compared"] == 10
    # Half the tenths: DI 0.3 off only above α = 0.5.
    runs = as_our_runs(published)
    runs.loc[runs["attn_rate"] >= 0.5, "distance_irrelevance"] -= 0.3
    assert paper_block(runs, published)["share_within"] == 0.5
    # Our grid at width 64 is compared, and says it is not the paper's width.
    narrow = paper_block(as_our_runs(published).assign(width=64), published)
    assert narrow["width"] == 64 and narrow["exact_width"] is False


def test_gs_alone_labels_the_papers_low_alpha_runs_pizza(published: pd.DataFrame) -> None:
    shares = published_phase_shares(published, 0.9, 0.6, 0.7, 0.95)
    low = shares[shares["alpha_hi"] <= 0.5]
    assert (low["pizza_gs"] > 0.95).all()
    assert (low["pizza_gs_di"] < 0.75).all()  # the DI cut would call a quarter of them clocks
    assert shares.loc[shares["tenth"] >= 8, "pizza_gs"].max() < 0.01


def test_the_rule_on_the_published_runs_is_plain_json_and_follows_the_threshold(
        published: pd.DataFrame) -> None:
    rule = PhaseConfig(min_test_acc=0.95, min_circularity=0.7, pizza_min_gs=0.9,
                       pizza_max_di=1.0, circle_majority=0.8)
    block = published_phases(published, rule)
    # What the summarise stage writes (metrics/published_phases.json): strict JSON, no NaN.
    again = json.loads(json.dumps(block, allow_nan=False))
    assert again["runs"] == len(published) == sum(t["runs"] for t in again["tenths"])
    assert again["thresholds"]["pizza_min_gs"] == 0.9 and len(again["tenths"]) == 10
    assert again["low"]["pizza_gs"] > 0.95  # the paper's pizzas below α = 0.5 ...
    assert again["low"]["pizza_gs_di"] < 0.75  # ... a quarter of them with DI > 0.6
    # A stricter GS threshold labels fewer of them pizza; the runs are the same.
    strict = published_phases(published, dataclasses.replace(rule, pizza_min_gs=0.99))
    assert strict["low"]["pizza_gs"] < again["low"]["pizza_gs"]
    assert strict["thresholds"]["pizza_min_gs"] == 0.99 and strict["runs"] == again["runs"]


def test_the_plot_rows_are_medians_per_width_and_alpha() -> None:
    runs = pd.DataFrame({"family": "transformer", "n_layers": 1, "diff_vocab": False,
                         "eqn_sign": False, "width": [32, 32, 32, 64], "seed": [0, 1, 2, 0],
                         "attn_rate": [0.5] * 4, "gradient_symmetricity": [0.1, 0.2, 0.9, 0.4],
                         "distance_irrelevance": [0.3, 0.3, 0.6, 0.5]})
    rows = medians_by_width(runs)
    assert rows.to_dict("list") == {"width": [32, 64], "attn_rate": [0.5, 0.5],
                                    "gs_median": [0.2, 0.4], "di_median": [0.3, 0.5],
                                    "runs": [3, 1]}
    assert np.isfinite(rows[["gs_median", "di_median"]].to_numpy()).all()


def test_the_chance_of_a_match_is_what_the_papers_own_runs_score(published: pd.DataFrame) -> None:
    # One run: the share of the tenth's published runs within 0.10 (GS) and 0.15 (DI) of the
    # tenth's medians, counted directly; many runs: their median is the tenth's, nearly always.
    pizza = published[alpha_tenth(published["attn_rate"]) == 0]
    gs, di = pizza["gradient_symmetricity"], pizza["distance_irrelevance"]
    alone = ((gs - gs.median()).abs().le(0.10) & (di - di.median()).abs().le(0.15)).mean()
    assert 0.2 < alone < 0.6  # the pizzas' DI is wide: one run matches less than half the time
    assert match_chance(pizza, 1) == pytest.approx(alone, abs=0.03)  # 2 000 draws
    assert match_chance(pizza, 101) > 0.95
    assert match_chance(pizza, 1) == match_chance(pizza, 1)  # seeded: the report is stable
    assert np.isnan(match_chance(pizza, 0)) and np.isnan(match_chance(pizza.iloc[:0], 3))


def test_the_chance_of_so_few_matches_is_the_binomial_one_when_every_tenth_is_a_coin() -> None:
    # ten tenths, each matching half the time: P(3 or fewer) = (1 + 10 + 45 + 120) / 2**10
    assert at_most_chance([0.5] * 10, 3) == pytest.approx(176 / 1024)
    assert at_most_chance([0.2, 0.9], 0) == pytest.approx(0.8 * 0.1)
    assert at_most_chance([0.2, 0.9], 2) == pytest.approx(1.0)

