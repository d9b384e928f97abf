"""The phase rule: GS and DI as the paper's signatures, the circles as the deciding evidence."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from clockpizza.io.params import PhaseConfig, parse_params
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
