"""Low- against high-α runs in the first layer: the phase alignment of their neurons compared with
a maximum mean discrepancy (MMD) and a permutation test over runs.

A neuron's *phase alignment* is its φ_L − φ_R minus the circular mean of its cluster's (wrapped to
(−π, π]): 0 for every neuron of a perfect disc, spread over the circle for a torus. Only neurons
of clusters with a verdict (not ``small``) count. The 2026 paper (arXiv 2512.25060) compared such
distributions of α = 0 and α = 1 networks by an MMD; here, precisely:

- kernel: Gaussian in the chord distance on the circle, k(x, y) = exp(−|e^{ix} − e^{iy}|² / 2σ²),
  so that −π and π are the same angle;
- bandwidth σ: ``neurons.mmd_bandwidth`` (chord length; 0.5 ≈ 29° apart), or with 0 the
  median chord distance between all pooled neurons of the two groups (the median heuristic).
  The fixed default because when every neuron is aligned the median heuristic shrinks σ to the
  jitter of the fit, and the test then reports differences far below any that change a
  cluster's geometry; σ is fixed before the permutations either way;
- each run weighs the same, whatever its number of neurons: a group's distribution is the mean
  of its runs' empirical distributions, so MMD² = cᵀ G c, where G[r, s] is the mean kernel
  value between the neurons of runs r and s and c is 1/n_low on the low runs, −1/n_high on the
  high ones;
- p-value: the share of ``n_perm`` random relabellings of the runs (the group sizes kept) whose
  MMD is at least the observed one, counting the observed labelling itself ((1 + hits) /
  (1 + n_perm)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd


def phase_alignment(neurons: pd.DataFrame, clusters: pd.DataFrame) -> pd.DataFrame:
    """The fitted neurons of judged clusters with their ``alignment`` (module docstring):
    columns run_id, neuron, freq, phase_diff, alignment."""
    judged = clusters.loc[clusters["verdict"] != "small", ["run_id", "freq", "mean_phase_diff"]]
    fit = neurons.loc[neurons["fitted"], ["run_id", "neuron", "freq", "phase_diff"]]
    out = fit.merge(judged, on=["run_id", "freq"], how="inner")
    out["alignment"] = np.angle(np.exp(1j * (out["phase_diff"] - out["mean_phase_diff"])))
    return out.drop(columns="mean_phase_diff").sort_values(["run_id", "neuron"],
                                                           ignore_index=True)


@dataclass(frozen=True)
class MMDResult:
    mmd: float  # sqrt of the (biased, V-statistic) MMD², ≥ 0
    p_value: float  # NaN when n_perm = 0 or a group is empty
    bandwidth: float  # σ of the Gaussian kernel (radians of chord length)
    n_low: int  # runs in each group (with at least one neuron)
    n_high: int
    n_perm: int


def _chord2(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return 2.0 - 2.0 * np.cos(x[:, None] - y[None, :])  # |e^{ix} − e^{iy}|²


def _median_chord(values: np.ndarray, max_points: int = 4000) -> float:
    # The median over all pairs; beyond max_points an evenly spaced subset of the sorted values
    # stands in, so the cost stays bounded and the result deterministic.
    v = np.sort(values)
    if len(v) > max_points:
        v = v[np.linspace(0, len(v) - 1, max_points).round().astype(int)]
    d = np.sqrt(_chord2(v, v)[np.triu_indices(len(v), k=1)])
    return float(np.median(d)) if len(d) else math.nan


def run_mmd(samples: list[np.ndarray], is_low: np.ndarray, n_perm: int,
            seed: int, bandwidth: float = 0.0) -> MMDResult:
    """MMD between two groups of runs, each run a sample of angles (module docstring);
    ``bandwidth`` 0: the median heuristic."""
    is_low = np.asarray(is_low, dtype=bool)
    n_low, n_high = int(is_low.sum()), int((~is_low).sum())
    if n_low == 0 or n_high == 0:
        return MMDResult(math.nan, math.nan, math.nan, n_low, n_high, n_perm)
    sigma = bandwidth if bandwidth > 0 else _median_chord(np.concatenate(samples))
    if not sigma > 0:  # every angle equal: no spread to compare, the groups are the same
        return MMDResult(0.0, 1.0 if n_perm else math.nan, 0.0, n_low, n_high, n_perm)
    r = len(samples)
    gram = np.empty((r, r))
    for i in range(r):
        for j in range(i, r):
            gram[i, j] = gram[j, i] = np.exp(-_chord2(samples[i], samples[j])
                                             / (2 * sigma**2)).mean()

    def mmd2(low: np.ndarray) -> float:
        c = np.where(low, 1.0 / n_low, -1.0 / n_high)
        return float(c @ gram @ c)

    observed = mmd2(is_low)
    p_value = math.nan
    if n_perm:
        rng = np.random.default_rng(seed)
        hits = sum(mmd2(rng.permutation(is_low)) >= observed - 1e-12 for _ in range(n_perm))
        p_value = (1 + hits) / (1 + n_perm)
    return MMDResult(math.sqrt(max(observed, 0.0)), p_value, sigma, n_low, n_high, n_perm)


def low_high_mmd(neurons: pd.DataFrame, clusters: pd.DataFrame, runs: pd.DataFrame,
                 low_alpha_max: float, high_alpha_min: float, n_perm: int,
                 seed: int, bandwidth: float = 0.0) -> MMDResult:
    """The MMD of phase alignment between runs with α ≤ ``low_alpha_max`` and α ≥
    ``high_alpha_min`` (``runs`` has run_id and attn_rate; runs without judged clusters drop)."""
    aligned = phase_alignment(neurons, clusters)
    groups = runs[(runs["attn_rate"] <= low_alpha_max) | (runs["attn_rate"] >= high_alpha_min)]
    by_run = {rid: g["alignment"].to_numpy() for rid, g in aligned.groupby("run_id")}
    keep = groups[groups["run_id"].isin(by_run)].sort_values("run_id")
    samples = [by_run[rid] for rid in keep["run_id"]]
    return run_mmd(samples, (keep["attn_rate"] <= low_alpha_max).to_numpy(), n_perm, seed,
                   bandwidth)
