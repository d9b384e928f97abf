"""The 2025-26 challenge to the paper, measured on our runs: first-layer neurons, their frequency
clusters, and whether each cluster lies on a disc or a torus.

McCracken et al. (arXiv 2505.18266) and Moisescu-Pareja, McCracken et al. (arXiv 2512.25060)
describe each first-layer MLP neuron by the *simple neuron model*: its pre-activation over the
p × p inputs is ≈ A_L cos(2πfa/p + φ_L) + A_R cos(2πfb/p + φ_R), one frequency f, two phases.
The neurons of one frequency form a cluster; when φ_L − φ_R is the same for all of them, every
neuron is a linear function of the two numbers Re, Im of e^{iθa} + e^{i(θb − Δ)} (θ = 2πf/p), so
the cluster's p²-point cloud has rank 2 and fills a *vector-addition disc* (the pizza's
geometry); when the differences spread, the cloud needs e^{iθa} and e^{iθb} separately, rank 4,
a *torus*. This module measures that account (the definitions below are this project's, written
from the papers' text, not their code):

**Pre-activation** (:func:`first_layer_preactivations`): the first block's MLP input at the last
position times ``W_in`` plus ``b_in``, for all p² pairs, from the weights (the attention output
rebuilt from the public attention pattern, ``W_V`` and ``W_O``).

**Simple-neuron fit** (:func:`fit_neurons`), per neuron with pre-activation H(a, b):
m_L(a) = mean_b H(a, b), m_R(b) = mean_a H(a, b); their DFTs F_L, F_R; f = the k in
1..(p − 1)/2 maximising |F_L(k)|² + |F_R(k)|²; A_L = 2|F_L(f)|/p, φ_L = arg F_L(f) (and the same
for R), so that m_L(a) ≈ mean H + A_L cos(2πfa/p + φ_L). The fit is Ĥ(a, b) = mean H +
A_L cos(2πfa/p + φ_L) + A_R cos(2πfb/p + φ_R) and R² = 1 − Σ(H − Ĥ)²/Σ(H − mean H)² over all p²
pairs. A neuron is *dead* when it never fires (H ≤ 0 on every pair) or its standard deviation
over the pairs is below ``dead_rel_std`` × the median over the model's neurons; it is *fitted*
when alive with R² ≥ ``min_r2``.

**Clusters** (:func:`cluster_table`): the fitted neurons of each frequency. Per cluster, with
Δ_n = φ_L − φ_R of its neurons: the mean resultant length R̄ = |mean_n e^{iΔ_n}| and circular
mean Δ̄; the share of the cluster's variance (its pre-activations [p², n] centred over the pairs)
in the top 2 and top 4 singular directions. Under the simple neuron model with equal
amplitudes and phases spread around the circle the top-2 share is (1 + R̄)/2 and the top-4 share
1, so the two measures agree where the model holds. Verdict: ``disc`` when R̄ ≥
``disc_min_resultant`` and the top-2 share ≥ ``disc_min_top2``; ``torus`` when R̄ ≤
``torus_max_resultant``, the top-2 share is below ``disc_min_top2`` and the top-4 share ≥
``torus_min_top4``; ``mixed`` otherwise; ``small`` (no verdict) when it has fewer than
``min_cluster_neurons`` neurons.

**Templates and CKA** (:func:`linear_cka`): linear CKA (Kornblith et al. 2019) between the
cluster's pre-activations [p², n] and a template [p², k], both centred over the pairs. The disc
template is the 2 columns Re, Im of e^{iθa} + e^{i(θb − Δ̄)} (the disc of the cluster's own
mean phase difference: any constant difference gives a disc); the torus template the 4 columns
cos θa, sin θa, cos θb, sin θb (linear CKA is invariant to rotations, so no phase enters).
A run's layer-1 CKA to either template is the mean of its clusters' (verdict-bearing ones), each
weighted by its share of the variance of all clustered neurons.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from clockpizza.io.params import NeuronsConfig, Params
from clockpizza.io.table import NEURON_CLUSTERS_SCHEMA, NEURON_RUNS_SCHEMA, NEURONS_SCHEMA
from clockpizza.science.architectures import load_model, model_config
from clockpizza.science.data import all_pairs, encode
from clockpizza.science.model import BatchedTransformer, stack
from clockpizza.science.paper import load_paper_run, paper_checkpoints
from clockpizza.science.runs import read_spec_run
from clockpizza.science.spec import TRANSFORMER, grid_groups

VERDICTS = ("disc", "torus", "mixed", "small")


@torch.no_grad()
def first_layer_preactivations(model: BatchedTransformer, p: int, *, diff_vocab: bool = False,
                               eqn_sign: bool = False) -> Tensor:
    """The first block's MLP pre-activation at the last position, ``[M, p, p, d_mlp]`` [a, b].

    Rebuilt from the weights: x = W_E[tokens] + W_pos; the attention output at the last position
    is Σ_k pattern[k] · x_k W_V W_O summed over heads, with the model's own pattern (α included);
    the MLP input is x_last plus that output.
    """
    a, b = all_pairs(p, model.attn_rate.device)
    tokens = encode(a, b, p, diff_vocab=diff_vocab, eqn_sign=eqn_sign)  # [B, n_ctx]
    x = model.embed.W_E[:, tokens] + model.pos_embed.W_pos[:, None]  # [M, B, n_ctx, d]
    attn = model.blocks[0]["attn"]
    mlp = model.blocks[0]["mlp"]
    pattern = model.attention_pattern(tokens, 0)[:, :, :, -1]  # [M, B, h, key]
    v = torch.einsum("mbkd,mhde->mbkhe", x, attn.W_V)  # [M, B, key, h, e]
    z = torch.einsum("mbhk,mbkhe->mbhe", pattern, v)  # [M, B, h, e]
    resid = x[:, :, -1] + torch.einsum("mbhe,mhed->mbd", z, attn.W_O)  # [M, B, d]
    pre = torch.baddbmm(mlp.b_in[:, None], resid, mlp.W_in)  # [M, B, d_mlp]
    return pre.view(model.n_models, p, p, -1)


def fit_neurons(pre: np.ndarray, cfg: NeuronsConfig) -> pd.DataFrame:
    """The simple-neuron fit of every neuron of one model, ``pre`` [p, p, N] indexed [a, b, n].

    Columns as :data:`~clockpizza.io.table.NEURONS_SCHEMA` (without ``run_id``); phases in
    [0, 2π), ``phase_diff`` = φ_L − φ_R wrapped to (−π, π].
    """
    pre = np.asarray(pre, dtype=np.float64)
    p, p2, n = pre.shape
    if p != p2:
        raise ValueError(f"pre-activations of shape {pre.shape}: expected [p, p, neurons]")
    mean = pre.mean(axis=(0, 1))  # [N]
    left = np.fft.fft(pre.mean(axis=1), axis=0)  # [p, N]: DFT of m_L over a
    right = np.fft.fft(pre.mean(axis=0), axis=0)  # [p, N]: DFT of m_R over b
    ks = np.arange(1, (p - 1) // 2 + 1)
    power = np.abs(left[ks]) ** 2 + np.abs(right[ks]) ** 2  # [K, N]
    f = ks[power.argmax(axis=0)]  # [N]
    cols = np.arange(n)
    fl, fr = left[f, cols], right[f, cols]
    amp_l, amp_r = 2 * np.abs(fl) / p, 2 * np.abs(fr) / p
    phi_l, phi_r = np.mod(np.angle(fl), 2 * np.pi), np.mod(np.angle(fr), 2 * np.pi)
    theta = 2 * np.pi * np.arange(p)[:, None] * f[None, :] / p  # [p, N]
    fit = (mean + amp_l * np.cos(theta + phi_l))[:, None, :] + \
        (amp_r * np.cos(theta + phi_r))[None, :, :]  # [p, p, N]
    ss_tot = ((pre - mean) ** 2).sum(axis=(0, 1))
    ss_res = ((pre - fit) ** 2).sum(axis=(0, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.nan)
    std = pre.std(axis=(0, 1))
    dead = (pre.max(axis=(0, 1)) <= 0) | (std < cfg.dead_rel_std * np.median(std))
    fitted = ~dead & (r2 >= cfg.min_r2)
    return pd.DataFrame({
        "neuron": cols.astype(np.int64), "freq": f.astype(np.int64),
        "amp_left": amp_l, "amp_right": amp_r, "phase_left": phi_l, "phase_right": phi_r,
        "phase_diff": np.angle(np.exp(1j * (phi_l - phi_r))), "r2": r2, "std": std,
        "dead": dead, "fitted": fitted,
    })


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two representations of the same points, ``[n_points, *]`` each."""
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    cross = np.linalg.norm(x.T @ y) ** 2
    norm = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / norm) if norm > 0 else math.nan


def disc_template(p: int, f: int, delta: float) -> np.ndarray:
    """Re, Im of e^{iθa} + e^{i(θb − Δ)}, θ = 2πf/p: ``[p², 2]`` in (a, b) row-major order."""
    a, b = np.divmod(np.arange(p * p), p)
    z = np.exp(2j * np.pi * f * a / p) + np.exp(1j * (2 * np.pi * f * b / p - delta))
    return np.stack([z.real, z.imag], axis=1)


def torus_template(p: int, f: int) -> np.ndarray:
    """cos θa, sin θa, cos θb, sin θb, θ = 2πf/p: ``[p², 4]`` in (a, b) row-major order."""
    a, b = np.divmod(np.arange(p * p), p)
    ta, tb = 2 * np.pi * f * a / p, 2 * np.pi * f * b / p
    return np.stack([np.cos(ta), np.sin(ta), np.cos(tb), np.sin(tb)], axis=1)


def verdict(resultant: float, top2: float, top4: float, n: int, cfg: NeuronsConfig) -> str:
    """disc / torus / mixed / small (module docstring)."""
    if n < cfg.min_cluster_neurons:
        return "small"
    if resultant >= cfg.disc_min_resultant and top2 >= cfg.disc_min_top2:
        return "disc"
    if (resultant <= cfg.torus_max_resultant and top2 < cfg.disc_min_top2
            and top4 >= cfg.torus_min_top4):
        return "torus"
    return "mixed"


def cluster_table(pre: np.ndarray, neurons: pd.DataFrame, cfg: NeuronsConfig) -> pd.DataFrame:
    """One row per frequency of the fitted neurons (columns of NEURON_CLUSTERS_SCHEMA without
    ``run_id``), in frequency order."""
    p = pre.shape[0]
    flat = np.asarray(pre, dtype=np.float64).reshape(p * p, -1)
    fitted = neurons[neurons["fitted"]]
    rows = []
    for f, g in fitted.groupby("freq", sort=True):
        x = flat[:, g["neuron"].to_numpy()]
        x = x - x.mean(axis=0)
        # Squared singular values of x = eigenvalues of its small [n, n] Gram matrix (cheaper
        # than an SVD of the tall [p², n] matrix).
        sv2 = np.clip(np.linalg.eigvalsh(x.T @ x)[::-1], 0, None)
        total = float(sv2.sum())
        e = np.exp(1j * g["phase_diff"].to_numpy())
        m = e.mean()
        resultant, delta = float(abs(m)), float(np.angle(m))
        top2, top4 = float(sv2[:2].sum() / total), float(sv2[:4].sum() / total)
        rows.append({
            "freq": int(f), "n_neurons": len(g), "variance": total,
            "resultant": resultant, "mean_phase_diff": delta, "top2_share": top2,
            "top4_share": top4, "cka_disc": linear_cka(x, disc_template(p, int(f), delta)),
            "cka_torus": linear_cka(x, torus_template(p, int(f))),
            "verdict": verdict(resultant, top2, top4, len(g), cfg),
        })
    cols = [c for c in NEURON_CLUSTERS_SCHEMA.names if c != "run_id"]
    return pd.DataFrame(rows, columns=cols)


def run_row(neurons: pd.DataFrame, clusters: pd.DataFrame) -> dict[str, object]:
    """A run's summary (NEURON_RUNS_SCHEMA without ``run_id`` and the grid coordinates)."""
    alive = ~neurons["dead"]
    judged = clusters[clusters["verdict"] != "small"]
    w = judged["variance"] / judged["variance"].sum() if len(judged) else judged["variance"]
    return {
        "n_neurons": len(neurons), "n_dead": int(neurons["dead"].sum()),
        "n_fitted": int(neurons["fitted"].sum()),
        "fitted_share": float(neurons["fitted"].sum() / alive.sum()) if alive.any() else math.nan,
        "median_r2": float(neurons.loc[alive, "r2"].median()) if alive.any() else math.nan,
        "n_freqs": len(judged),
        "disc_share": float((judged["verdict"] == "disc").mean()) if len(judged) else math.nan,
        "torus_share": float((judged["verdict"] == "torus").mean()) if len(judged) else math.nan,
        "cka_disc": float((w * judged["cka_disc"]).sum()) if len(judged) else math.nan,
        "cka_torus": float((w * judged["cka_torus"]).sum()) if len(judged) else math.nan,
    }


def measure_model(pre: np.ndarray, cfg: NeuronsConfig) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                 dict[str, object]]:
    """The neurons, clusters and summary of one model from its pre-activations [p, p, N]."""
    neurons = fit_neurons(pre, cfg)
    clusters = cluster_table(pre, neurons, cfg)
    return neurons, clusters, run_row(neurons, clusters)


NeuronTables = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]


def _tables(parts: list[tuple[str, dict[str, object], pd.DataFrame, pd.DataFrame,
                              dict[str, object]]]) -> NeuronTables:
    neurons = [n.assign(run_id=rid) for rid, _, n, _, _ in parts]
    clusters = [c.assign(run_id=rid) for rid, _, _, c, _ in parts]
    rows = [{"run_id": rid, **coords, **summary} for rid, coords, _, _, summary in parts]

    def cat(frames: list[pd.DataFrame], names: list[str]) -> pd.DataFrame:
        frames = [f for f in frames if not f.empty]
        return (pd.concat(frames, ignore_index=True)[names] if frames
                else pd.DataFrame(columns=names))
    return (cat(neurons, NEURONS_SCHEMA.names), cat(clusters, NEURON_CLUSTERS_SCHEMA.names),
            pd.DataFrame(rows, columns=NEURON_RUNS_SCHEMA.names))


def collect_neurons(params: Params, runs_root: str | Path) -> NeuronTables:
    """The three tables for every transformer run of the grid in params (the attention-free
    models have no first-layer MLP of this kind and are left out); a run whose weights are
    not finite (diverged) is left out too."""
    parts = []
    for name, specs in grid_groups(params):
        for spec in specs:
            if spec.family != TRANSFORMER or spec.attn_rate is None:
                continue
            cfg = model_config(spec)
            run = read_spec_run(Path(runs_root) / name / spec.run_id, cfg, spec.run_id)
            if not all(bool(torch.isfinite(w).all()) for w in run.weights.values()):
                continue
            model = load_model(cfg, stack([run.weights]), [spec.attn_rate])
            if not isinstance(model, BatchedTransformer):
                raise TypeError(f"run {spec.run_id}: expected a transformer")
            pre = first_layer_preactivations(model, spec.p, diff_vocab=spec.diff_vocab,
                                             eqn_sign=spec.eqn_sign)[0].double().numpy()
            coords = {"attn_rate": spec.attn_rate, "width": spec.d_model,
                      "seed": spec.init_seed, "n_layers": spec.n_layers}
            parts.append((spec.run_id, coords, *measure_model(pre, params.neurons)))
    return _tables(parts)


def paper_neuron_tables(folder: str | Path, cfg: NeuronsConfig) -> NeuronTables:
    """The three tables for the authors' released transformers in ``folder`` (``run_id`` = their
    run id; ``seed`` = -1: not known)."""
    parts = []
    for path in paper_checkpoints(folder):
        run = load_paper_run(path)
        model = run.model()
        if not isinstance(model, BatchedTransformer):
            continue
        pre = first_layer_preactivations(model, run.p, diff_vocab=run.diff_vocab,
                                         eqn_sign=run.eqn_sign)[0].double().numpy()
        coords = {"attn_rate": float(run.attn_rate if run.attn_rate is not None else math.nan),
                  "width": int(run.cfg.d_model), "seed": -1, "n_layers": int(run.cfg.n_layers)}
        parts.append((run.runid, coords, *measure_model(pre, cfg)))
    return _tables(parts)
