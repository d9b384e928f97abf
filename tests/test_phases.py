"""The phase rule: GS and DI as the paper's signatures, the circles as the deciding evidence."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from clockpizza.io.params import PhaseConfig, parse_params
from clockpizza.io.table import MID_ALPHA_SCHEMA, PAPER_MEASURED_SCHEMA, PAPER_MODELS_SCHEMA
from clockpizza.results.labels import label_mid_alpha, label_paper_models
from clockpizza.results.phases import classify

ROOT = Path(__file__).resolve().parents[1]
RULE = PhaseConfig(min_test_acc=0.99, min_circularity=0.7, pizza_min_gs=0.9, pizza_max_di=0.6,
                   circle_majority=0.8)
PIZZA_METRICS = {"gradient_symmetricity": 0.99, "distance_irrelevance": 0.35}
CLOCK_METRICS = {"gradient_symmetricity": 0.5, "distance_irrelevance": 0.85}


def run(metrics: dict[str, float], clock_share: float, pizza_share: float | None = None, *,
        n_circles: int = 3, test_acc: float = 1.0, circularity: float = 0.95
        ) -> dict[str, float]:
    """A runs-table row; by default every circle is typed, so the pizza share is the rest."""
    return {**metrics, "clock_circle_share": clock_share,
            "pizza_circle_share": 1 - clock_share if pizza_share is None else pizza_share,
            "n_circles": n_circles, "test_acc": test_acc, "circularity": circularity}


@pytest.mark.parametrize(("row", "want"), [
    # GS/DI and the circles agree.
    (run(PIZZA_METRICS, 0.0), "pizza"),
    (run(CLOCK_METRICS, 1.0), "clock"),
    # GS/DI say pizza, but the circles are clocks: the mechanism wins.
    (run(PIZZA_METRICS, 0.9), "clock"),
    (run(CLOCK_METRICS, 0.1), "pizza"),
    # Mixed circles, or circles that match no template: GS/DI decide.
    (run(PIZZA_METRICS, 0.5), "pizza"),
    (run(CLOCK_METRICS, 0.5), "clock"),
    (run(PIZZA_METRICS, 0.0, 0.0), "pizza"),
    (run({"gradient_symmetricity": 0.95, "distance_irrelevance": 0.7}, 0.0, 0.0), "clock"),
    # A pizza circle beside a larger untyped one is partial evidence: it does not decide.
    (run(CLOCK_METRICS, 0.0, 0.45), "clock"),
    (run(PIZZA_METRICS, 0.6, 0.0), "pizza"),
    # Exactly at the majority counts as a majority.
    (run(PIZZA_METRICS, 0.8), "clock"),
    (run(CLOCK_METRICS, 0.2), "pizza"),
    # Not learned, not circular, or no circle at all: non-circular whatever else it shows.
    (run(PIZZA_METRICS, 0.0, test_acc=0.5), "non-circular"),
    (run(CLOCK_METRICS, 1.0, circularity=0.4), "non-circular"),
    (run(PIZZA_METRICS, math.nan, math.nan, n_circles=0), "non-circular"),
])
def test_phase_rule(row: dict[str, float], want: str) -> None:
    assert classify(pd.DataFrame([row]), RULE).tolist() == [want]


def test_a_majority_of_one_lets_only_unanimous_circles_override() -> None:
    strict = PhaseConfig(**{**RULE.__dict__, "circle_majority": 1.0})
    rows = pd.DataFrame([run(PIZZA_METRICS, 0.9), run(PIZZA_METRICS, 1.0),
                         run(CLOCK_METRICS, 0.05), run(CLOCK_METRICS, 0.0)])
    assert classify(rows, strict).tolist() == ["pizza", "clock", "clock", "pizza"]


def test_the_rule_reads_its_thresholds_from_params() -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    phase = parse_params(raw).phase
    assert phase.circle_majority == raw["phase"]["circle_majority"]
    assert 0.5 < phase.circle_majority <= 1.0


def test_the_mid_alpha_table_gets_todays_label_beside_its_old_one() -> None:
    # An older table (no circle shares): GS and DI decide. A symmetric run with DI 0.7 was a
    # clock under the rule of its time (DI <= 0.6 required); with DI not required it is a pizza.
    old = pd.DataFrame({"condition": ["shared", "shared"], "attn_rate": [0.45, 1.0],
                        "width": 32, "seed": 0, "steps": 20_000, "test_acc": 1.0,
                        "gradient_symmetricity": [0.97, 0.4], "distance_irrelevance": [0.7, 0.9],
                        "circularity": 0.95, "n_circles": 4, "phase": ["clock", "clock"]})
    labelled = label_mid_alpha(old, dataclasses.replace(RULE, pizza_max_di=1.0))
    assert list(labelled["phase_now"]) == ["pizza", "clock"]
    assert list(labelled["phase"]) == ["clock", "clock"]  # the old label is kept
    assert {*old.columns, "phase_now"} <= set(labelled.columns)
    assert list(label_mid_alpha(old, RULE)["phase_now"]) == ["clock", "clock"]
    # Empty (no mid-α table in results/): an empty table of the same columns.
    empty = label_mid_alpha(pd.DataFrame(columns=MID_ALPHA_SCHEMA.names[:-1]), RULE)
    assert empty.empty and set(MID_ALPHA_SCHEMA.names) <= set(empty.columns)


def test_the_authors_models_are_labelled_by_the_same_rule_as_ours() -> None:
    # Their accuracy (over all p² pairs) stands for the test accuracy; the attention-free
    # family has no circles, so GS and DI decide.
    row = {c: 0.0 for c in PAPER_MEASURED_SCHEMA.names}
    measured = pd.DataFrame([
        {**row, **PIZZA_METRICS, "family": "transformer", "accuracy": 1.0, "circularity": 0.95,
         "n_circles": 2, "clock_circle_share": 0.0, "pizza_circle_share": 1.0},
        {**row, **PIZZA_METRICS, "family": "transformer", "accuracy": 0.5, "circularity": 0.95,
         "n_circles": 2, "clock_circle_share": 0.0, "pizza_circle_share": 1.0},
        {**row, **CLOCK_METRICS, "family": "B", "accuracy": 1.0, "circularity": 0.95,
         "n_circles": 0, "clock_circle_share": math.nan, "pizza_circle_share": math.nan},
    ])
    labelled = label_paper_models(measured, RULE)
    assert list(labelled["phase"]) == ["pizza", "non-circular", "clock"]
    assert list(labelled.columns) == PAPER_MODELS_SCHEMA.names
