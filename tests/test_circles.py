"""The per-circle analysis on inputs whose answer is known by construction, and against a naive
implementation of the specification's templates and FVE written out with explicit loops."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import Tensor

from clockpizza.analysis.circles import (
    analyse_models,
    centre_outputs,
    find_circles,
    fve,
    half_frequency,
    principal_components,
    restrict_embedding,
    run_summary,
    templates,
)
from clockpizza.io.table import CIRCLE_COLUMNS
from clockpizza.science.model import BatchedTransformer, TransformerConfig, init_params, stack

P = 59




# ---------------------------------------------------------------------------------------------
# the specification's templates, written out independently: explicit loops over (a, b, c), math
# module.


def q_clock(p: int, k: int) -> np.ndarray:
    w = 2 * math.pi * k / p
    return np.array([[[math.cos(w * (a + b - c)) for c in range(p)] for b in range(p)]
                     for a in range(p)])


def q_pizza(p: int, k: int) -> np.ndarray:
    w = 2 * math.pi * k / p
    return np.array([[[2 * abs(math.cos(w * (a - b) / 2))
                       * (abs(math.cos(w * (a + b - c) / 2)) - abs(math.sin(w * (a + b - c) / 2)))
                       for c in range(p)] for b in range(p)] for a in range(p)])


def q_acc(p: int, k: int) -> np.ndarray:
    """Q_acc of the pizza at frequency k (its accompanying circle turns at 2k)."""
    w = 2 * math.pi * k / p
    return np.array([[[-(math.cos(2 * w * a - w * c) + math.cos(2 * w * b - w * c))
                       for c in range(p)] for b in range(p)] for a in range(p)])


def naive_fve(logits: np.ndarray, template: np.ndarray) -> float:
    """The authors' notebook: sklearn's ``explained_variance_score(y, ŷ) = 1 − Var(y − ŷ) / Var(y)``
    with y and ŷ the logits and the template, each standardised over all p³ entries."""
    y = (logits.ravel() - logits.mean()) / logits.std()
    y_hat = (template.ravel() - template.mean()) / template.std()
    return 1.0 - float(np.var(y - y_hat)) / float(np.var(y))


def naive_fve_centred(logits: np.ndarray, template: np.ndarray) -> float:
    """The same after subtracting the mean over (a, b) at each c, written as explicit loops."""
    p = logits.shape[0]
    out = logits.copy()
    for c in range(p):
        out[:, :, c] -= sum(logits[a, b, c] for a in range(p) for b in range(p)) / p**2
    return naive_fve(out, template)


def all_fves(logits: np.ndarray, k: int) -> list[float]:
    return fve(torch.from_numpy(logits), templates(logits.shape[0], k)).tolist()


@pytest.fixture(scope="module")
def tensors() -> dict[str, np.ndarray]:
    return {"clock": q_clock(P, 7), "pizza": q_pizza(P, 7), "acc": q_acc(P, 7)}


# ---------------------------------------------------------------------------------------------
# Templates and FVE


def test_templates_are_the_spec_formulas(tensors: dict[str, np.ndarray]) -> None:
    got = templates(P, 7).numpy()
    np.testing.assert_allclose(got[0], tensors["clock"], atol=1e-12)
    np.testing.assert_allclose(got[1], tensors["pizza"], atol=1e-12)
    # An accompanying circle is found at twice the pizza's frequency: 14 tests Q_acc at 7.
    np.testing.assert_allclose(templates(P, 14).numpy()[2], tensors["acc"], atol=1e-12)


@pytest.mark.parametrize(("k", "half"), [(14, 7), (10, 5), (7, 26), (1, 29), (29, 15)])
def test_half_frequency_doubles_back(k: int, half: int) -> None:
    assert half_frequency(k, P) == half
    assert (2 * half) % P in (k, P - k)
    assert half_frequency(4, 10) is None  # 2 has no inverse mod an even p


def test_a_clock_logit_tensor_is_explained_by_the_clock_template(
        tensors: dict[str, np.ndarray]) -> None:
    # Any affine image of Q_clock: standardisation removes scale and offset.
    clock, pizza, acc = all_fves(3.0 * tensors["clock"] - 1.5, 7)
    assert clock == pytest.approx(1.0, abs=1e-9)
    # The two templates overlap: Q_pizza's c-dependence is close to cos(w(a+b−c)) and its
    # amplitude 2|cos(w(a−b)/2)| has mean²/mean-square 8/π² ≈ 0.81, so ρ² ≈ 0.80 and the paper's
    # FVE 2ρ − 1 ≈ 0.79 for a pure clock, clearly below 1; Q_acc lives at another frequency
    # (ρ ≈ 0: FVE −1, the signed score of an unrelated template).
    assert pizza < 0.85 and acc == pytest.approx(-1.0, abs=1e-6)
    assert pizza == pytest.approx(naive_fve(tensors["clock"], tensors["pizza"]), abs=1e-9)


def test_a_pizza_logit_tensor_is_explained_by_the_pizza_template(
        tensors: dict[str, np.ndarray]) -> None:
    clock, pizza, acc = all_fves(2.0 * tensors["pizza"] + 4.0, 7)
    assert pizza == pytest.approx(1.0, abs=1e-9)
    assert clock < 0.85 and acc < -0.99  # the same overlap as above, seen from the other side
    assert clock == pytest.approx(naive_fve(tensors["pizza"], tensors["clock"]), abs=1e-9)


def test_the_fve_is_signed_as_the_papers(tensors: dict[str, np.ndarray]) -> None:
    # explained_variance_score of standardised tensors is 2ρ − 1: a logit tensor that is the
    # template upside down (ρ = −1) scores −3, one unrelated to it (ρ = 0) −1; never ρ².
    flipped = all_fves(-tensors["pizza"], 7)[1]
    assert flipped == pytest.approx(-3.0, abs=1e-9)
    assert flipped == pytest.approx(naive_fve(-tensors["pizza"], tensors["pizza"]), abs=1e-9)


def test_an_accompanying_logit_tensor_is_explained_by_q_acc(
        tensors: dict[str, np.ndarray]) -> None:
    clock, pizza, acc = all_fves(tensors["acc"], 14)
    assert acc == pytest.approx(1.0, abs=1e-9)
    assert acc > max(clock, pizza) + 0.9


def test_fve_is_the_r2_of_an_affine_fit_on_a_noisy_mixture(
        tensors: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(0)
    logits = tensors["clock"] + 0.7 * tensors["pizza"] + rng.normal(0, 0.8, (P, P, P))
    got = all_fves(logits, 7)
    want = [naive_fve(logits, tensors[t]) for t in ("clock", "pizza")]
    assert got[:2] == pytest.approx(want, abs=1e-9)
    assert 0.2 < got[0] < 0.9 and 0.2 < got[1] < 0.9


def test_the_centred_fve_sees_through_an_output_bias(tensors: dict[str, np.ndarray]) -> None:
    # A circle's logits plus a profile over the output c alone (what the rest of a clock adds
    # when its other circles sit at their mean): no template can explain the profile, so the
    # paper's FVE drops; the centred FVE removes it and finds the clock again.
    rng = np.random.default_rng(1)
    bias = 3.0 * rng.standard_normal(P)[None, None, :]
    logits = tensors["clock"] + bias
    paper = all_fves(logits, 7)[0]
    centred = fve(centre_outputs(torch.from_numpy(logits)), templates(P, 7)).tolist()[0]
    assert paper < 0.2
    assert centred == pytest.approx(1.0, abs=1e-9)
    assert centred == pytest.approx(naive_fve_centred(logits, tensors["clock"]), abs=1e-9)


# ---------------------------------------------------------------------------------------------
# Finding circles


def embed_circles(p: int, d: int, circles: list[tuple[int, float, float]],
                  noise: float = 0.0, seed: int = 0) -> Tensor:
    """Token embeddings [p, d]: circle i is (r_cos cos(2πk t/p), r_sin sin(2πk t/p)) on its own
    pair of random orthonormal directions, plus an offset and optional Gaussian noise."""
    gen = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    t = torch.arange(p, dtype=torch.float64)
    w_e = torch.randn(d, generator=gen, dtype=torch.float64).expand(p, d).clone()
    for i, (k, r_cos, r_sin) in enumerate(circles):
        angle = 2 * math.pi * k * t / p
        w_e += r_cos * torch.cos(angle)[:, None] * basis[2 * i]
        w_e += r_sin * torch.sin(angle)[:, None] * basis[2 * i + 1]
    return w_e + noise * torch.randn(p, d, generator=gen, dtype=torch.float64)


def test_two_exact_circles_are_recovered_with_their_frequencies_and_shares() -> None:
    w_e = embed_circles(P, 24, [(11, 2.0, 2.0), (3, 1.0, 1.0)])
    found = find_circles(w_e, max_circles=4, min_var_share=0.01)
    assert [(c.freq, c.pc_a, c.pc_b) for c in found] == [(11, 0, 1), (3, 2, 3)]
    # Radius² shares: 4 + 4 and 1 + 1 of a total of 10.
    assert [c.var_share for c in found] == pytest.approx([0.8, 0.2], abs=1e-9)
    assert [c.circularity for c in found] == pytest.approx([1.0, 1.0], abs=1e-9)


def test_a_frequency_above_p_over_2_is_reported_as_its_mirror() -> None:
    w_e = embed_circles(P, 8, [(50, 1.0, 1.0)])  # 50 ≡ −9 (mod 59)
    assert [c.freq for c in find_circles(w_e, 2, 0.01)] == [9]


def test_components_are_paired_by_frequency_not_by_order() -> None:
    # An ellipse (variances 4 and 2.25) around a round circle (3.24 twice): by variance the
    # components come ellipse, round, round, ellipse; pairing neighbours would mix them.
    w_e = embed_circles(P, 16, [(5, 2.0, 1.5), (13, 1.8, 1.8)])
    found = find_circles(w_e, max_circles=2, min_var_share=0.01)
    assert [(c.freq, c.pc_a, c.pc_b) for c in found] == [(5, 0, 3), (13, 1, 2)]
    assert found[0].var_share == pytest.approx((4 + 2.25) / (4 + 2.25 + 2 * 3.24), abs=1e-9)


def test_small_circles_and_components_beyond_the_limit_are_left_out() -> None:
    w_e = embed_circles(P, 24, [(4, 3.0, 3.0), (9, 2.0, 2.0), (17, 0.3, 0.3)])
    assert [c.freq for c in find_circles(w_e, 4, 0.005)] == [4, 9, 17]
    assert [c.freq for c in find_circles(w_e, 4, 0.01)] == [4, 9]  # 0.18 / 26.18 < 0.01
    assert [c.freq for c in find_circles(w_e, 1, 0.0)] == [4]


def test_circularity_is_one_for_a_sinusoid_and_low_for_noise() -> None:
    clean = find_circles(embed_circles(P, 16, [(6, 1.0, 1.0)], noise=0.0), 1, 0.0)
    assert clean[0].circularity == pytest.approx(1.0, abs=1e-12)
    slightly = find_circles(embed_circles(P, 16, [(6, 1.0, 1.0)], noise=0.02), 1, 0.0)
    assert slightly[0].freq == 6 and 0.95 < slightly[0].circularity < 1.0
    noise = torch.randn(P, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    found = find_circles(noise, 4, 0.0)
    # Pure noise: random pairs of components rarely share a frequency, and when they do the
    # frequency carries little of their energy (a single ±k pair holds 1/29 on average).
    assert all(c.circularity < 0.35 for c in found)


def test_keeping_one_circle_projects_the_others_out() -> None:
    w_e = embed_circles(P, 12, [(11, 2.0, 2.0), (3, 1.0, 1.0)])
    extra = torch.randn(3, 12, dtype=torch.float64)  # rows of tokens beyond p stay as they are
    full = torch.cat([w_e, extra])
    comp = principal_components(w_e)
    found = find_circles(w_e, 2, 0.0)
    only = restrict_embedding(full, P, comp, found[1])
    np.testing.assert_array_equal(only[P:].numpy(), extra.numpy())
    # What remains of tokens 0..p-1 is the mean plus the k = 3 circle, and nothing of k = 11.
    direct = embed_circles(P, 12, [(0, 0.0, 0.0), (3, 1.0, 1.0)])
    np.testing.assert_allclose(only[:P].numpy(), direct.numpy(), atol=1e-9, rtol=0)


# ---------------------------------------------------------------------------------------------
# The whole analysis on a model, against a naive re-implementation


def tiny_model(p: int, d: int, rates: list[float]) -> BatchedTransformer:
    cfg = TransformerConfig(d_vocab=p, n_ctx=2, d_model=d, n_heads=4, n_layers=1)
    models = []
    for seed in range(len(rates)):
        w = init_params(cfg, seed)
        # Give the embedding two clear circles so that circles are found.
        w["embed.W_E"] = (embed_circles(p, d, [(2, 3.0, 3.0), (4, 2.0, 2.0)], noise=0.05,
                                        seed=seed) / 3).float()
        models.append(w)
    return BatchedTransformer(cfg, stack(models), rates)


def naive_circle_fves(model: BatchedTransformer, i: int, p: int, pcs: tuple[int, int],
                      k: int) -> list[float]:
    """FVEs of model i with only components ``pcs`` kept, the slow and obvious way."""
    w_e = model.embed.W_E.detach()[i].double().numpy()
    mean = w_e[:p].mean(axis=0)
    _, _, vh = np.linalg.svd(w_e[:p] - mean)
    plane = vh[list(pcs)]  # [2, d]
    kept = w_e.copy()
    for t in range(p):
        kept[t] = mean + plane.T @ (plane @ (w_e[t] - mean))
    params = {name: v.detach()[i:i + 1].clone() for name, v in model.named_parameters()}
    params["embed.W_E"] = torch.from_numpy(kept).float()[None]
    one = BatchedTransformer(model.cfg, params, model.attn_rate[i:i + 1])
    logits = np.zeros((p, p, p))
    with torch.no_grad():
        for a in range(p):
            out = one(torch.tensor([[a, b] for b in range(p)]))[0]  # [p, V]
            logits[a] = out[:, :p].double().numpy()
    h = half_frequency(k, p)
    assert h is not None
    return [naive_fve(logits, q_clock(p, k)), naive_fve(logits, q_pizza(p, k)),
            naive_fve(logits, q_acc(p, h))]


def test_circle_fves_of_a_model_match_a_naive_implementation() -> None:
    p = 13
    model = tiny_model(p, 16, [0.0, 1.0])
    frames = analyse_models(model, p, max_circles=2, min_var_share=0.0, min_fve=0.5)
    assert len(frames) == 2
    for i, frame in enumerate(frames):
        assert list(frame.columns) == [c for c in CIRCLE_COLUMNS if c != "run_id"]
        assert frame["freq"].tolist() == [2, 4]
        for row in frame.itertuples():
            want = naive_circle_fves(model, i, p, (row.pc_a, row.pc_b), row.freq)
            assert [row.fve_clock, row.fve_pizza, row.fve_acc] == pytest.approx(want, abs=1e-6)
            assert row.type in ("clock", "pizza", "accompanying", "none")


def test_a_model_alone_gets_the_circles_it_gets_in_a_batch() -> None:
    p = 13
    both = analyse_models(tiny_model(p, 16, [0.0, 1.0]), p, max_circles=2, min_var_share=0.0,
                          min_fve=0.5)
    alone = tiny_model(p, 16, [0.0, 1.0])
    params = {k: v.detach()[1:2] for k, v in alone.named_parameters()}
    second = analyse_models(BatchedTransformer(alone.cfg, params, [1.0]), p, max_circles=2,
                            min_var_share=0.0, min_fve=0.5)
    pd.testing.assert_frame_equal(both[1], second[0], atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Per-run summary


def circle_rows(*rows: tuple[float, str, float, float]) -> pd.DataFrame:
    return pd.DataFrame([{"var_share": s, "type": t, "fve_clock": fc, "fve_pizza": fp}
                         for s, t, fc, fp in rows])


def test_run_summary_of_a_pizza_with_its_accompanying_circle() -> None:
    got = run_summary(circle_rows((0.3, "accompanying", 0.0, 0.1), (0.5, "pizza", 0.5, 0.9),
                                  (0.1, "clock", 0.9, 0.5), (0.1, "none", 0.1, 0.1)))
    assert got["n_circles"] == 4
    assert got["dominant_circle_type"] == "pizza"
    assert got["fve_clock_mean"] == pytest.approx((0.0 + 0.5 + 0.9 + 0.1) / 4)
    assert got["fve_pizza_mean"] == pytest.approx((0.1 + 0.9 + 0.5 + 0.1) / 4)
    # Shares of all the circles' variance (1.0): the untyped circle counts in the total only.
    assert got["clock_circle_share"] == pytest.approx(0.1)
    assert got["pizza_circle_share"] == pytest.approx(0.8)


def test_run_summary_without_circles() -> None:
    got = run_summary(circle_rows())
    assert got["n_circles"] == 0 and got["dominant_circle_type"] == "none"
    assert math.isnan(got["clock_circle_share"]) and math.isnan(got["fve_clock_mean"])
    untyped = run_summary(circle_rows((0.4, "none", 0.2, 0.3)))
    assert untyped["n_circles"] == 1
    assert untyped["clock_circle_share"] == untyped["pizza_circle_share"] == 0.0
