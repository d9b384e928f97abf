"""First-layer neurons: the simple-neuron fit finds planted frequencies and phases, clusters come
out disc or torus as constructed, the pre-activations are the model's own, the low/high-α MMD
tells apart what differs, and the report section and figures are drawn from the tables."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from fake_runs import make_runs

from clockpizza.analysis.neurons import (
    cluster_table,
    disc_template,
    first_layer_preactivations,
    fit_neurons,
    linear_cka,
    measure_model,
    paper_neuron_tables,
    torus_template,
)
from clockpizza.figures.plots import save
from clockpizza.figures.plots_neurons import NEURON_FIGURES
from clockpizza.figures.report import build_report
from clockpizza.figures.report_neurons import (
    NeuronInputs,
    load_neuron_inputs,
    neuron_recipes,
    neurons_context,
)
from clockpizza.io.params import NeuronsConfig, ParamsError, parse_params
from clockpizza.io.table import NEURON_TABLES, write_table
from clockpizza.results.boundary import fit_main
from clockpizza.results.neuron_stats import run_mmd
from clockpizza.science.data import all_pairs, encode
from clockpizza.science.model import BatchedTransformer, TransformerConfig

ROOT = Path(__file__).resolve().parents[1]
P = 31
CFG = NeuronsConfig(min_r2=0.9, dead_rel_std=0.01, min_cluster_neurons=3,
                    disc_min_resultant=0.9, disc_min_top2=0.9, torus_max_resultant=0.5,
                    torus_min_top4=0.9, low_alpha_max=0.2, high_alpha_min=0.8,
                    mmd_bandwidth=0.5, mmd_permutations=200, mmd_seed=0)


def planted(freqs: np.ndarray, phi_l: np.ndarray, phi_r: np.ndarray, amp_l: np.ndarray,
            amp_r: np.ndarray, p: int = P, offset: float = 0.3) -> np.ndarray:
    """Simple neurons [p, p, N]: offset + A_L cos(2πfa/p + φ_L) + A_R cos(2πfb/p + φ_R)."""
    a = np.arange(p)[:, None, None]
    b = np.arange(p)[None, :, None]
    w = 2 * np.pi * freqs / p
    return offset + amp_l * np.cos(w * a + phi_l) + amp_r * np.cos(w * b + phi_r)


def wrapped(x: np.ndarray) -> np.ndarray:
    return np.angle(np.exp(1j * x))


# --------------------------------------------------------------------------------------------
# The fit.


def test_fit_recovers_planted_frequency_phases_and_amplitudes() -> None:
    rng = np.random.default_rng(0)
    n = 40
    freqs = rng.integers(1, (P - 1) // 2 + 1, n)
    phi_l, phi_r = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 2 * np.pi, n)
    amp_l, amp_r = rng.uniform(0.5, 2, n), rng.uniform(0.5, 2, n)
    pre = planted(freqs, phi_l, phi_r, amp_l, amp_r) + 0.02 * rng.standard_normal((P, P, n))
    fit = fit_neurons(pre, CFG)
    assert (fit["freq"].to_numpy() == freqs).all()
    assert np.abs(wrapped(fit["phase_left"].to_numpy() - phi_l)).max() < 0.05
    assert np.abs(wrapped(fit["phase_right"].to_numpy() - phi_r)).max() < 0.05
    assert np.abs(wrapped(fit["phase_diff"].to_numpy() - (phi_l - phi_r))).max() < 0.1
    assert np.allclose(fit["amp_left"], amp_l, atol=0.02)
    assert np.allclose(fit["amp_right"], amp_r, atol=0.02)
    assert (fit["r2"] > 0.99).all() and fit["fitted"].all() and not fit["dead"].any()


def test_noise_is_not_fitted_and_a_silent_neuron_is_dead() -> None:
    rng = np.random.default_rng(1)
    good = planted(np.array([3, 5]), np.zeros(2), np.ones(2), np.ones(2), np.ones(2))
    noise = rng.standard_normal((P, P, 1))
    silent = np.full((P, P, 1), -0.5)  # a ReLU neuron that never fires
    fit = fit_neurons(np.concatenate([good, noise, silent], axis=2), CFG)
    assert fit["fitted"].tolist() == [True, True, False, False]
    assert fit["dead"].tolist() == [False, False, False, True]
    assert fit["r2"].iloc[2] < 0.2  # one frequency explains little of white noise


# --------------------------------------------------------------------------------------------
# Clusters and templates.


STEPS = np.linspace(0, 2 * np.pi, 12, endpoint=False)  # 12 phases evenly around the circle


def _cluster(phi_l: np.ndarray, phi_r: np.ndarray, f: int = 4) -> pd.DataFrame:
    n = len(phi_l)
    pre = planted(np.full(n, f), phi_l, phi_r, np.ones(n), np.ones(n))
    _, clusters, _ = measure_model(pre, CFG)
    assert len(clusters) == 1 and int(clusters["freq"].iloc[0]) == f
    return clusters.iloc[0]


def test_constant_phase_difference_is_a_disc() -> None:
    c = _cluster(STEPS + 0.1, STEPS + 0.1 - 0.7)
    assert c["verdict"] == "disc"
    assert c["resultant"] == pytest.approx(1.0, abs=1e-6)
    assert c["mean_phase_diff"] == pytest.approx(0.7, abs=1e-6)
    assert c["top2_share"] == pytest.approx(1.0, abs=1e-6)
    assert c["cka_disc"] == pytest.approx(1.0, abs=1e-6)


def test_spread_phase_differences_are_a_torus() -> None:
    # φ_L = step k, φ_R = step 3k: the differences (step −2k) spread evenly, resultant 0.
    c = _cluster(STEPS + 0.1, 3 * STEPS + 0.2)
    assert c["verdict"] == "torus"
    assert c["resultant"] < 0.01
    assert c["top2_share"] == pytest.approx(0.5, abs=0.01)  # (1 + R̄)/2, R̄ = 0
    assert c["top4_share"] == pytest.approx(1.0, abs=1e-6)
    assert c["cka_torus"] == pytest.approx(1.0, abs=1e-6)
    assert c["cka_disc"] < 0.8


def test_half_spread_differences_are_mixed_and_few_neurons_small() -> None:
    assert _cluster(STEPS, STEPS - np.linspace(-1.2, 1.2, 12))["verdict"] == "mixed"
    pre = planted(np.full(2, 4), np.zeros(2), np.zeros(2), np.ones(2), np.ones(2))
    neurons = fit_neurons(pre, CFG)
    assert cluster_table(pre, neurons, CFG)["verdict"].tolist() == ["small"]


def test_cka_of_templates() -> None:
    disc = disc_template(P, 3, 0.4)
    assert linear_cka(disc, disc) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(disc, 3.0 * disc @ np.array([[0.6, -0.8], [0.8, 0.6]])) == \
        pytest.approx(1.0, abs=1e-12)  # invariant to rotation and scale
    # A disc's 2 directions are an isotropic half of the torus's 4: CKA 2 / (√2 · 2) = 1/√2.
    assert linear_cka(disc, torus_template(P, 3)) == pytest.approx(1 / math.sqrt(2), abs=1e-9)
    assert linear_cka(disc, torus_template(P, 5)) == pytest.approx(0.0, abs=1e-9)


# --------------------------------------------------------------------------------------------
# The pre-activations are those of the model's own forward pass.


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("eqn_sign", [False, True])
def test_preactivations_are_the_forward_pass_mlp_input(alpha: float, eqn_sign: bool) -> None:
    p = 7
    cfg = TransformerConfig(d_vocab=p + int(eqn_sign), n_ctx=2 + int(eqn_sign), d_model=16,
                            n_heads=4, n_layers=1)
    model = BatchedTransformer.from_seeds(cfg, [3], [alpha])
    captured: list[torch.Tensor] = []
    original = model._mlp

    def spy(w: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        captured.append(x)
        return original(w, x)

    model._mlp = spy  # type: ignore[method-assign]
    with torch.no_grad():
        a, b = all_pairs(p)
        model(encode(a, b, p, eqn_sign=eqn_sign))
    mlp = model.blocks[0]["mlp"]
    expected = captured[0][0, :, -1] @ mlp.W_in[0] + mlp.b_in[0]  # [p², d_mlp]
    got = first_layer_preactivations(model, p, eqn_sign=eqn_sign)[0].reshape(p * p, -1)
    assert torch.allclose(got, expected, atol=1e-5)


def test_at_alpha_zero_a_neuron_is_a_sum_of_a_term_and_b_term() -> None:
    # Constant attention: the last position's MLP input is linear in the two embeddings.
    cfg = TransformerConfig(d_vocab=P, n_ctx=2, d_model=16, n_heads=4, n_layers=1)
    pre = first_layer_preactivations(BatchedTransformer.from_seeds(cfg, [0], [0.0]), P)[0]
    h = pre.double().numpy()
    additive = h.mean(axis=1, keepdims=True) + h.mean(axis=0, keepdims=True) - h.mean((0, 1))
    assert np.abs(h - additive).max() < 1e-5


# --------------------------------------------------------------------------------------------
# Low against high α.


def test_mmd_separates_aligned_from_spread_runs_and_not_equal_ones() -> None:
    rng = np.random.default_rng(0)
    tight = [rng.normal(0, 0.05, 30) for _ in range(6)]
    spread = [rng.uniform(-np.pi, np.pi, 30) for _ in range(6)]
    labels = np.array([True] * 6 + [False] * 6)
    apart = run_mmd(tight + spread, labels, 500, 0)
    assert apart.p_value < 0.01 and apart.mmd > 0.3
    same = run_mmd(tight + [rng.normal(0, 0.05, 30) for _ in range(6)], labels, 500, 0)
    assert same.p_value > 0.05 and same.mmd < apart.mmd / 3
    assert (apart.n_low, apart.n_high) == (6, 6)
    assert math.isnan(run_mmd(tight, np.ones(6, bool), 10, 0).mmd)  # no high group
    # The median heuristic takes σ from the data: the chord distances of tightly aligned
    # angles are small, and so is σ.
    assert run_mmd(tight + tight, labels, 0, 0).bandwidth < 0.2
    assert run_mmd(tight + tight, labels, 0, 0, bandwidth=0.5).bandwidth == 0.5


def test_params_refuse_crossed_thresholds() -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["neurons"]["torus_max_resultant"] = raw["neurons"]["disc_min_resultant"]
    with pytest.raises(ParamsError, match=r"neurons\.torus_max_resultant"):
        parse_params(raw)


# --------------------------------------------------------------------------------------------
# The tables behind the figures and the report section.


def fake_neuron_tables(runs: pd.DataFrame) -> NeuronInputs:
    """Neuron tables of the 1-layer runs: discs at α ≤ 0.4, tori above (p = 31, 12 neurons of
    each of 2 frequencies)."""
    rng = np.random.default_rng(0)
    parts = {"neurons": [], "clusters": [], "runs": []}
    for r in runs[runs["n_layers"] == 1].itertuples():
        blocks = []
        for f in (3, 7):
            phi_l = rng.uniform(0, 2 * np.pi, 12)
            delta = (np.full(12, rng.uniform(-1, 1)) if r.attn_rate <= 0.4
                     else np.linspace(0, 2 * np.pi, 12, endpoint=False))
            blocks.append(planted(np.full(12, f), phi_l, phi_l - delta, np.ones(12),
                                  np.ones(12)))
        neurons, clusters, summary = measure_model(np.concatenate(blocks, axis=2), CFG)
        parts["neurons"].append(neurons.assign(run_id=r.run_id))
        parts["clusters"].append(clusters.assign(run_id=r.run_id))
        parts["runs"].append({"run_id": r.run_id, "attn_rate": r.attn_rate, "width": r.width,
                              "seed": r.seed, "n_layers": 1, **summary})
    return NeuronInputs(neurons=pd.concat(parts["neurons"], ignore_index=True),
                        clusters=pd.concat(parts["clusters"], ignore_index=True),
                        runs=pd.DataFrame(parts["runs"]))


def ctx_text_of(ctx: dict) -> str:
    from clockpizza.figures.report import _render
    return _render("neurons.md.j2", {"neurons": ctx})


def test_report_section_states_what_the_tables_hold(tmp_path: Path) -> None:
    runs = make_runs(seed=3)
    inputs = fake_neuron_tables(runs)
    figures = neuron_recipes(inputs, runs, CFG, fit_main(runs, n_boot=0))
    assert set(figures) == set(NEURON_FIGURES)
    paths = {stem: f"figures/{stem}.png" for stem in figures}
    ctx = neurons_context(inputs, runs, paths, CFG)
    assert ctx is not None
    low = inputs.runs[inputs.runs["attn_rate"] <= 0.2]
    high = inputs.runs[inputs.runs["attn_rate"] >= 0.8]
    assert ctx["low"]["runs"] == len(low) == 8 and ctx["high"]["runs"] == len(high) == 8
    assert ctx["low"]["disc"] == 1.0 and ctx["high"]["disc"] == 0.0
    assert ctx["mmd"].p_value < 0.05
    text = build_report(runs, paths, 128, boundary=fit_main(runs, n_boot=0), neurons=ctx)
    assert "## Two stories or one?" in text
    assert f"permutation p = {ctx['mmd'].p_value:.3g} over 16 runs" in text
    assert "paired rather than independent" in text  # fake_runs: shared initial weights
    for stem in NEURON_FIGURES:
        assert f"](figures/{stem}.png)" in text
    assert "Two stories" not in build_report(runs, {}, 128)  # no tables, no section
    assert "Model A" not in ctx_text_of(ctx)  # no tables of the authors' models: not named
    first = {stem: [p.read_bytes() for p in save(draw(), tmp_path / "a" / stem)]
             for stem, draw in figures.items()}
    again = neuron_recipes(inputs, runs, CFG, fit_main(runs, n_boot=0))
    assert {stem: [p.read_bytes() for p in save(draw(), tmp_path / "b" / stem)]
            for stem, draw in again.items()} == first


def test_the_tables_the_neurons_stage_writes_are_read_back(tmp_path: Path) -> None:
    runs = make_runs(non_circular=0.1, seed=2)
    inputs = fake_neuron_tables(runs)
    assert load_neuron_inputs(tmp_path) is None  # before the stage ran: no section
    for name, table in (("neurons", inputs.neurons), ("neuron_clusters", inputs.clusters),
                        ("neuron_runs", inputs.runs)):
        write_table(tmp_path / f"{name}.parquet", table, NEURON_TABLES[name])
    read = load_neuron_inputs(tmp_path)
    assert read is not None and read.paper_runs is None  # no tables of the authors' models
    pd.testing.assert_frame_equal(read.runs, inputs.runs, check_dtype=False)
    section = neurons_context(read, runs, {}, CFG)
    assert section is not None and section["n_runs"] == len(inputs.runs)
    assert section["fig_alpha"] is None  # not drawn: no path given


def test_the_authors_model_a_and_b_in_the_section(tmp_path: Path) -> None:
    # Model A (α = 0) and Model B (α = 1) alone, from the repository's copy of the checkpoints.
    for runid in ("p99zdpze5l", "l8k1hzciux"):
        for ext in (".safetensors", ".json"):
            (tmp_path / f"{runid}{ext}").write_bytes(
                (ROOT / "paper/checkpoints" / f"{runid}{ext}").read_bytes())
    neurons, clusters, per_run = paper_neuron_tables(tmp_path, CFG)
    assert sorted(per_run["run_id"]) == ["l8k1hzciux", "p99zdpze5l"]
    assert (per_run["n_neurons"] == 512).all()  # d_mlp = 4 × 128
    # The simple neuron model describes both first layers (R² of a one-frequency fit).
    assert (per_run["median_r2"] > 0.9).all()
    runs = make_runs(seed=3)
    none = neurons.iloc[:0]
    ctx = neurons_context(NeuronInputs(none, clusters.iloc[:0], per_run.iloc[:0], neurons,
                                       clusters, per_run), runs, {}, CFG)
    assert ctx is not None and ctx["n_runs"] == 0
    text = ctx_text_of(ctx)
    for m, (runid, row) in zip(ctx["paper_models"], per_run.set_index("run_id").loc[
            ["p99zdpze5l", "l8k1hzciux"]].iterrows(), strict=True):
        assert m["run_id"] == runid
        verdicts = clusters[clusters["run_id"] == runid]["verdict"].value_counts()
        assert f"median R² of the simple-neuron fit {row['median_r2']:.3f}" in text
        assert f"layer-1 CKA to the disc {row['cka_disc']:.3f}" in text
        for verdict, count in verdicts.items():
            assert f"{verdict} {count}" in m["verdicts"]
    assert "one model on each side, so no test" in text
    assert "**Runs.**" not in text  # no runs of ours: that part is left out
