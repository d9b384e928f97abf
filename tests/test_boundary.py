"""The fitted pizza/clock boundary recovers a boundary we planted, and ignores what it should."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from clockpizza.results.boundary import SUMMARY_KEYS, Boundary, boundary_summary, fit_boundary

WIDTHS = np.array([32, 64, 128, 256, 512])
ALPHAS = np.linspace(0.0, 1.0, 21)  # step 0.05
COPIES = 3


def true_alpha_star(width: np.ndarray | float) -> np.ndarray:
    # The planted line, straight in (alpha, log2 width). Its offset 0.225 puts it midway between
    # grid points at every width (0.225, 0.375, ..., 0.825): on a grid, any line inside the gap
    # between the last pizza and the first clock alpha fits equally well, and the fit (rightly)
    # picks the middle of the gap, so a line on a grid point would read as a 0.025 bias.
    return 0.225 + 0.15 * np.log2(np.asarray(width, dtype=np.float64) / 32.0)


def planted_runs(widths: np.ndarray = WIDTHS, noise: float = 0.03, seed: int = 0,
                 copies: int = COPIES) -> pd.DataFrame:
    """Grid of runs labelled pizza iff alpha < alpha*(width), with a fraction ``noise`` flipped."""
    alpha, width = np.meshgrid(ALPHAS, widths)  # [width, alpha] each
    alpha = np.repeat(alpha.ravel(), copies)
    width = np.repeat(width.ravel(), copies)
    pizza = alpha < true_alpha_star(width)
    flip = np.random.default_rng(seed).random(alpha.size) < noise
    return pd.DataFrame({
        "attn_rate": alpha,
        "width": width.astype(np.int64),
        "phase": np.where(pizza ^ flip, "pizza", "clock"),
    })


@pytest.fixture(scope="module")
def noisy() -> Boundary:
    b = fit_boundary(planted_runs(), n_boot=200, seed=0)
    assert b is not None
    return b


def test_recovers_planted_boundary_within_005(noisy: Boundary) -> None:
    for w in (32, 90, 128, 512):
        assert abs(noisy.transition_attn_rate(w) - true_alpha_star(w)) < 0.05, w
    # Pizza at low alpha, and wider models stay pizza to a higher alpha.
    assert noisy.coef_attn_rate < 0 < noisy.coef_log2_width
    assert noisy.n_runs == WIDTHS.size * ALPHAS.size * COPIES


def test_band_covers_truth_and_is_sensible(noisy: Boundary) -> None:
    widths = np.array([32.0, 128.0, 512.0])
    lo, hi = noisy.band(widths)
    assert lo.shape == hi.shape == widths.shape
    assert np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))
    assert np.all(lo <= true_alpha_star(widths)) and np.all(true_alpha_star(widths) <= hi)
    # Finite is not enough: a band a fifth of the whole alpha axis wide would say nothing.
    assert np.all(hi - lo > 0) and np.all(hi - lo < 0.2)
    est = np.array([noisy.transition_attn_rate(w) for w in widths])
    assert np.all(lo <= est) and np.all(est <= hi)
    assert noisy.n_boot_skipped == 0 and len(noisy.boot_coefs) == 200


def test_perfectly_separated_grid_gives_finite_fit_in_the_gap() -> None:
    # The common case on a clean sweep: without the L2 term the slopes would diverge.
    b = fit_boundary(planted_runs(noise=0.0), n_boot=20)
    assert b is not None
    assert all(math.isfinite(c) for c in (b.intercept, b.coef_attn_rate, b.coef_log2_width))
    for w in WIDTHS:
        assert abs(b.transition_attn_rate(w) - true_alpha_star(w)) < 0.005
    lo, hi = b.band(WIDTHS.astype(float))
    assert np.all(lo <= true_alpha_star(WIDTHS)) and np.all(true_alpha_star(WIDTHS) <= hi)


def test_single_width_fits_alpha_only() -> None:
    # As many runs as the five-width grid, all at one width: with only 63 runs a couple of
    # flipped labels far from the line can move alpha* by a whole grid step.
    b = fit_boundary(planted_runs(widths=np.array([128]), copies=5 * COPIES), n_boot=50)
    assert b is not None
    assert b.coef_log2_width == 0.0 and not b.fits_width
    assert abs(b.transition_attn_rate(128) - true_alpha_star(128)) < 0.05
    lo, hi = b.band(np.array([128.0]))
    assert lo[0] <= b.transition_attn_rate(128) <= hi[0]


def test_non_circular_and_attention_free_rows_are_ignored() -> None:
    clean = planted_runs()
    rng = np.random.default_rng(1)
    n = 200
    non_circular = pd.DataFrame({
        "attn_rate": rng.random(n),
        "width": rng.choice(WIDTHS, n),
        "phase": "non-circular",
    })
    attention_free = pd.DataFrame({
        "attn_rate": np.nan,
        "width": rng.choice(WIDTHS, n),
        # Labelled all pizza: counted, they would drag the boundary to high alpha.
        "phase": "pizza",
    })
    padded = pd.concat([non_circular, clean, attention_free], ignore_index=True)
    padded["extra_column"] = "ignored"
    assert fit_boundary(padded, n_boot=30) == fit_boundary(clean, n_boot=30)


def test_no_boundary_gives_none() -> None:
    runs = planted_runs(noise=0.0)
    assert fit_boundary(runs.assign(phase="pizza")) is None
    # One clock run is not enough to place a boundary.
    one_clock = runs[runs["phase"] == "pizza"]
    one_clock = pd.concat([one_clock, runs[runs["phase"] == "clock"].head(1)])
    assert fit_boundary(one_clock) is None
    # A single attention rate: both phases present, but nothing to regress on.
    assert fit_boundary(runs.assign(attn_rate=0.5)) is None
    summary = boundary_summary(None, 128)
    assert summary == dict.fromkeys(SUMMARY_KEYS)
    assert len(summary) == 7


def test_summary_is_plain_json_ready(noisy: Boundary) -> None:
    s = boundary_summary(noisy, 128)
    assert set(s) == set(SUMMARY_KEYS)
    assert type(s["n_runs"]) is int and s["n_runs"] == noisy.n_runs
    floats = {k: v for k, v in s.items() if k != "n_runs"}
    assert all(type(v) is float for v in floats.values())
    assert s["transition_attn_rate"] == round(noisy.transition_attn_rate(128), 6)
    assert s["transition_attn_rate_lo"] <= s["transition_attn_rate"] <= s["transition_attn_rate_hi"]
    json.dumps(s, allow_nan=False)


def test_no_bootstrap_gives_nan_band_and_null_metrics() -> None:
    b = fit_boundary(planted_runs(), n_boot=0)
    assert b is not None
    lo, hi = b.band(np.array([64.0, 128.0]))
    assert np.all(np.isnan(lo)) and np.all(np.isnan(hi))
    s = boundary_summary(b, 128)
    assert s["transition_attn_rate_lo"] is None and s["transition_attn_rate_hi"] is None
    assert s["transition_attn_rate"] is not None
    json.dumps(s, allow_nan=False)


def test_deterministic_for_a_seed(noisy: Boundary) -> None:
    runs = planted_runs()
    assert fit_boundary(runs, n_boot=200, seed=0) == noisy
    other = fit_boundary(runs, n_boot=200, seed=1)
    assert other is not None
    # The point estimate does not depend on the bootstrap seed; the band does.
    assert (other.intercept, other.coef_attn_rate, other.coef_log2_width) == (
        noisy.intercept, noisy.coef_attn_rate, noisy.coef_log2_width)
    widths = np.array([32.0, 128.0, 512.0])
    assert not np.array_equal(np.stack(other.band(widths)), np.stack(noisy.band(widths)))


@pytest.mark.parametrize("column", ["attn_rate", "width", "phase"])
def test_missing_column_is_named(column: str) -> None:
    with pytest.raises(ValueError, match=column):
        fit_boundary(planted_runs().drop(columns=column))


def test_unknown_phase_label_is_refused() -> None:
    runs = planted_runs()
    runs.loc[0, "phase"] = "Pizza"
    with pytest.raises(ValueError, match="'Pizza'"):
        fit_boundary(runs)


def test_the_band_resamples_seeds_not_runs() -> None:
    # Two seeds that disagree: every run of seed 0 turns clock above α 0.3, every run of seed 1
    # above 0.6 (their runs share initial weights, so they move together). Resampling runs
    # would mix both seeds in every draw and report a narrow band around 0.45; resampling the
    # seeds gives draws of seed 0 alone, seed 1 alone and both, so the band spans both.
    alpha = np.tile(np.linspace(0.0, 1.0, 21), 2)
    seed = np.repeat([0, 1], 21)
    star = np.where(seed == 0, 0.325, 0.625)
    runs = pd.DataFrame({"attn_rate": alpha, "width": 128, "seed": seed,
                         "phase": np.where(alpha < star, "pizza", "clock")})
    b = fit_boundary(runs, n_boot=200, seed=0)
    assert b is not None
    lo, hi = b.band(np.array([128.0]))
    assert lo[0] < 0.36 and hi[0] > 0.59, (lo, hi)
    # Runs that drew their own initial weights are independent: they resample one by one.
    own = fit_boundary(runs.assign(init_per_run=True), n_boot=200, seed=0)
    assert own is not None
    lo_own, hi_own = own.band(np.array([128.0]))
    assert hi_own[0] - lo_own[0] < hi[0] - lo[0]
