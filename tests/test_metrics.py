"""The paper's metrics on inputs whose answer is known by construction, and against naive
implementations of the specification's formulas."""

from __future__ import annotations

import cmath
import math
import statistics

import numpy as np
import pytest
import torch
from torch import Tensor

from clockpizza.analysis.metrics import (
    circularity,
    correct_logits,
    distance_irrelevance,
    gradient_symmetricity,
    gs_triples,
    largest_incorrect_logits,
    model_metrics,
    split_scores,
)
from clockpizza.science.data import make_dataset
from clockpizza.science.model import BatchedTransformer, TransformerConfig, init_params, stack

P = 59




def table(p: int, f: object) -> Tensor:
    """L[a, b] = f(s, δ) with s = (a + b) mod p and δ = (a − b) mod p."""
    return torch.tensor([[f((a + b) % p, (a - b) % p) for b in range(p)]  # type: ignore[operator]
                         for a in range(p)], dtype=torch.float64)


def naive_di(L: Tensor) -> float:
    """the specification's DI: fill the [s, δ] table by explicit loops, population standard
    deviations."""
    p = L.shape[0]
    by: list[list[float | None]] = [[None] * p for _ in range(p)]
    for a in range(p):
        for b in range(p):
            s, d = (a + b) % p, (a - b) % p
            assert by[s][d] is None  # for odd p each (s, δ) cell is hit exactly once
            by[s][d] = float(L[a, b])
    cols = [[by[s][d] for s in range(p)] for d in range(p)]
    within = statistics.fmean(statistics.pstdev(c) for c in cols)  # type: ignore[arg-type]
    total = statistics.pstdev(x for c in cols for x in c)  # type: ignore[misc]
    return within / total


# ---------------------------------------------------------------------------------------------
# Distance irrelevance


def test_di_of_a_clock_table_is_one() -> None:
    w = 2 * math.pi * 5 / P
    L = table(P, lambda s, d: 3 * math.cos(w * s))
    assert distance_irrelevance(L).item() == pytest.approx(1.0, abs=1e-12)
    noisy = L + 0.05 * torch.randn(P, P, generator=torch.Generator().manual_seed(0),
                                   dtype=torch.float64)
    di = distance_irrelevance(noisy).item()
    assert 0.95 < di <= 1.0
    assert di == pytest.approx(naive_di(noisy), abs=1e-12)


def test_di_of_a_pizza_table_is_small() -> None:
    # At c = a + b, Q_pizza = 2|cos(w(a−b)/2)|: the correct logit is a function of δ, plus a
    # little of s.
    w = 2 * math.pi * 7 / P
    L = table(P, lambda s, d: 2 * abs(math.cos(w * d / 2)) + 0.1 * math.cos(w * s))
    di = distance_irrelevance(L).item()
    assert di < 0.3
    assert di == pytest.approx(naive_di(L), abs=1e-12)


def test_di_of_a_separable_table_has_its_closed_form() -> None:
    # L = f(s) g(δ) with mean_s f = 0: std_s L[s, δ] = |g(δ)| std(f) and std(L) = std(f) rms(g),
    # so DI = mean|g| / rms(g), here for g(δ) = |cos(wδ/2)| (≈ (2/π) / (1/√2) ≈ 0.90).
    w = 2 * math.pi * 4 / P
    g = [abs(math.cos(w * d / 2)) for d in range(P)]
    want = statistics.fmean(g) / math.sqrt(statistics.fmean(x * x for x in g))
    L = table(P, lambda s, d: math.cos(w * s) * g[d])
    assert distance_irrelevance(L).item() == pytest.approx(want, abs=1e-9)


def test_di_matches_naive_on_a_random_table_and_batches() -> None:
    gen = torch.Generator().manual_seed(1)
    tables = torch.randn(3, 13, 13, generator=gen, dtype=torch.float64)
    tables[1] = tables[1] * torch.arange(13, dtype=torch.float64)  # depends on a alone
    got = distance_irrelevance(tables)
    assert got.shape == (3,)
    for m in range(3):
        assert got[m].item() == pytest.approx(naive_di(tables[m]), abs=1e-12)


def test_correct_logits_picks_the_label_of_each_pair() -> None:
    p, v = 7, 8
    # logits[m, a·p + b, c] = 1000 m + 100 a + 10 b + c: every entry says where it came from.
    m, a, b, c = torch.meshgrid(torch.arange(2), torch.arange(p), torch.arange(p),
                                torch.arange(v), indexing="ij")
    logits = (1000 * m + 100 * a + 10 * b + c).reshape(2, p * p, v).double()
    got = correct_logits(logits, p)
    assert got.shape == (2, p, p)
    for mm in range(2):
        for aa in range(p):
            for bb in range(p):
                assert got[mm, aa, bb].item() == 1000 * mm + 100 * aa + 10 * bb + (aa + bb) % p


# ---------------------------------------------------------------------------------------------
# Gradient symmetricity


def scaled_identity_attention(lam: float, p: int = 11, d: int = 8, h: int = 2,
                              seed: int = 0) -> BatchedTransformer:
    """α = 0, W_pos = 0 and W_V W_O = λ I: the last residual is λ E_a + (1 + λ) E_b.

    Everything after that (MLP, W_U: random) sees E_a and E_b only through that sum, so the two
    gradients are parallel: GS = +1 for λ > 0, −1 for λ = −1/2 (then it is (E_b − E_a) / 2).
    The brief's "embeddings in the first half, W_V/W_O into the second half" model is not
    symmetric: the residual stream also carries E_b itself to W_in and W_U, which then see any
    change of E_b in the second half, but not of E_a (its GS is about 0.85).
    """
    cfg = TransformerConfig(d_vocab=p, n_ctx=2, d_model=d, n_heads=h, n_layers=1)
    w = init_params(cfg, seed)
    e = d // h
    w["pos_embed.W_pos"] = torch.zeros(2, d)
    # Head i copies residual dims i·e .. (i+1)·e − 1 and writes them back, times λ.
    w["blocks.0.attn.W_V"] = torch.zeros(h, d, e)
    w["blocks.0.attn.W_O"] = torch.zeros(h, e, d)
    for i in range(h):
        w["blocks.0.attn.W_V"][i, i * e:(i + 1) * e] = torch.eye(e)
        w["blocks.0.attn.W_O"][i, :, i * e:(i + 1) * e] = lam * torch.eye(e)
    return BatchedTransformer(cfg, stack([w]), [0.0])


@pytest.mark.parametrize(("lam", "want"), [(1.0, 1.0), (3.0, 1.0), (-0.5, -1.0)])
def test_gs_of_a_model_that_sees_a_sum_of_embeddings(lam: float, want: float) -> None:
    model = scaled_identity_attention(lam)
    gs = gradient_symmetricity(model, 11, gs_triples(11, 100, 0))
    assert gs.item() == pytest.approx(want, abs=1e-6)


def test_gs_of_a_random_attention_model_is_clearly_below_one() -> None:
    cfg = TransformerConfig(d_vocab=P, n_ctx=2, d_model=32, n_heads=4, n_layers=1)
    model = BatchedTransformer.from_seeds(cfg, [0, 1, 2], [1.0, 1.0, 1.0])
    gs = gradient_symmetricity(model, P, gs_triples(P, 100, 0))
    assert gs.shape == (3,)
    assert (gs < 0.8).all()


def naive_logits(w: dict[str, Tensor], alpha: float, x_in: list[Tensor], n_layers: int) -> Tensor:
    """the specification's forward pass (ReLU) from the two looked-up embedding rows, one
    sequence."""
    n = len(x_in)
    x = [x_in[i] + w["pos_embed.W_pos"][i] for i in range(n)]
    for layer in range(n_layers):
        pre = f"blocks.{layer}."
        w_q, w_k, w_v, w_o = (w[pre + "attn." + k] for k in ("W_Q", "W_K", "W_V", "W_O"))
        out = [torch.zeros_like(x[0]) for _ in range(n)]
        for head in range(w_q.shape[0]):
            q, k, v = ([x[i] @ m[head] for i in range(n)] for m in (w_q, w_k, w_v))
            for i in range(n):
                scores = torch.stack([q[i] @ k[j] for j in range(n)]) / math.sqrt(w_q.shape[2])
                pattern = alpha * torch.softmax(scores, dim=0) + (1 - alpha)
                z = sum(pattern[j] * v[j] for j in range(n))
                out[i] = out[i] + z @ w_o[head]
        x = [x[i] + out[i] for i in range(n)]
        x = [x[i] + torch.relu(x[i] @ w[pre + "mlp.W_in"] + w[pre + "mlp.b_in"])
             @ w[pre + "mlp.W_out"] + w[pre + "mlp.b_out"] for i in range(n)]
    return x[-1] @ w["unembed.W_U"]


@pytest.mark.parametrize("n_layers", [1, 2])
def test_gs_matches_brute_force_autograd(n_layers: int) -> None:
    p, d, h = 11, 8, 2
    alphas = [0.0, 0.5, 1.0]
    cfg = TransformerConfig(d_vocab=p, n_ctx=2, d_model=d, n_heads=h, n_layers=n_layers)
    gen = torch.Generator().manual_seed(n_layers)
    models = [{k: torch.randn(v.shape, generator=gen, dtype=torch.float64) * 0.5
               for k, v in init_params(cfg, 0).items()} for _ in alphas]
    batched = BatchedTransformer(cfg, stack(models), alphas).double()
    # Include a = b: the two rows are the same vector but still two separate inputs.
    triples = torch.cat([gs_triples(p, 12, seed=5), torch.tensor([[4, 4, 2], [0, 0, 0]])])
    got = gradient_symmetricity(batched, p, triples)
    for m, alpha in enumerate(alphas):
        cosines = []
        for a, b, c in triples.tolist():
            e_a = models[m]["embed.W_E"][a].clone().requires_grad_(True)
            e_b = models[m]["embed.W_E"][b].clone().requires_grad_(True)
            g_a, g_b = torch.autograd.grad(naive_logits(models[m], alpha, [e_a, e_b],
                                                        n_layers)[c], [e_a, e_b])
            cosines.append(float(g_a @ g_b / (g_a.norm() * g_b.norm())))
        assert got[m].item() == pytest.approx(statistics.fmean(cosines), abs=1e-10)


def test_gs_triples_are_fixed_and_cover_the_range() -> None:
    t = gs_triples(P, 100, seed=0)
    assert t.shape == (100, 3)
    assert torch.equal(t, gs_triples(P, 100, seed=0))
    assert not torch.equal(t, gs_triples(P, 100, seed=1))
    assert t.min() >= 0 and t.max() <= P - 1
    assert len(set(t.flatten().tolist())) > 45  # 300 draws from 59 values reach most of them


# ---------------------------------------------------------------------------------------------
# Circularity


def naive_circularity(w_e: Tensor, n_components: int = 4) -> float:
    """PCA by eigen-decomposition of the covariance, DFT by explicit sums
    (docs/specification.md)."""
    x = w_e.double().numpy()
    x = x - x.mean(axis=0)
    vals, vecs = np.linalg.eigh(x.T @ x)
    order = np.argsort(vals)[::-1][:n_components]
    p = x.shape[0]
    shares = []
    for j in order:
        pc = x @ vecs[:, j]  # length p, one value per token
        dft = [sum(pc[t] * cmath.exp(-2j * math.pi * k * t / p) for t in range(p))
               for k in range(p)]
        energy = sum(abs(z) ** 2 for z in dft)
        shares.append(max(2 * abs(dft[k]) ** 2 for k in range(1, p // 2 + 1)) / energy)
    return statistics.fmean(shares)


def rotate(cols: list[list[float]], d: int, seed: int) -> Tensor:
    """Columns (length-p signals) placed along random orthonormal directions of R^d: [p, d]."""
    sig = torch.tensor(cols, dtype=torch.float64).T  # [p, n]
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed),
                                       dtype=torch.float64))
    return sig @ q[:, : sig.shape[1]].T


def test_circularity_of_pure_circles_is_one() -> None:
    t = range(P)
    w1, w2 = 2 * math.pi * 3 / P, 2 * math.pi * 17 / P
    cols = [[2 * math.cos(w1 * i) for i in t], [2 * math.sin(w1 * i) for i in t],
            [math.cos(w2 * i) for i in t], [math.sin(w2 * i) for i in t]]
    w_e = rotate(cols, 16, seed=0) + 0.7  # an offset does not matter: PCA centres
    assert circularity(w_e).item() == pytest.approx(1.0, abs=1e-9)


def test_circularity_of_two_mixed_frequencies_is_one_half() -> None:
    # Each column mixes two frequencies with equal energy; distinct scales make the columns the
    # principal components, each with share exactly 1/2.
    t = range(P)
    ws = [2 * math.pi * k / P for k in (1, 2, 5, 9, 11, 20, 23, 29)]
    cols = [[s * (math.cos(ws[2 * j] * i) + math.sin(ws[2 * j + 1] * i)) for i in t]
            for j, s in enumerate((4.0, 3.0, 2.0, 1.0))]
    w_e = rotate(cols, 12, seed=1)
    assert circularity(w_e).item() == pytest.approx(0.5, abs=1e-9)
    assert naive_circularity(w_e) == pytest.approx(0.5, abs=1e-9)


def test_circularity_of_noise_is_low_and_matches_naive() -> None:
    gen = torch.Generator().manual_seed(0)
    w_e = torch.randn(2, P, 32, generator=gen)
    got = circularity(w_e)
    assert got.shape == (2,)
    assert (got < 0.5).all()
    for m in range(2):
        assert got[m].item() == pytest.approx(naive_circularity(w_e[m]), abs=1e-9)


# ---------------------------------------------------------------------------------------------
# Accuracy and loss


def test_split_scores_on_constructed_logits() -> None:
    p = 7
    is_train = torch.as_tensor(make_dataset(p, 0.8, 0)["is_train"].to_numpy(copy=True))
    # Model 0 puts probability 0.6 on the right answer everywhere. Model 1 does so when a >= b;
    # when a < b it puts 0.6 on the wrong answer label + 1 and 0.1 on the right one.
    probs = torch.full((2, p * p, p), 0.0, dtype=torch.float64)
    expected: dict[str, list[list[float]]] = {k: [[], []] for k in ("train", "test")}
    hits: dict[str, list[list[float]]] = {k: [[], []] for k in ("train", "test")}
    for i in range(p * p):
        a, b = divmod(i, p)
        y = (a + b) % p
        split = "train" if is_train[i] else "test"
        for m in range(2):
            wrong = m == 1 and a < b
            q_right, top = (0.1, (y + 1) % p) if wrong else (0.6, y)
            probs[m, i] = (1 - q_right - (0.6 if wrong else 0)) / (p - 1 - int(wrong))
            probs[m, i, y] = q_right
            probs[m, i, top] = 0.6
            expected[split][m].append(-math.log(q_right))
            hits[split][m].append(0.0 if wrong else 1.0)
    logits = (probs.log() + 3.0).float()  # logits are only defined up to a constant
    got = split_scores(logits, p, is_train)
    for split in ("train", "test"):
        for m in range(2):
            assert got[f"{split}_loss"][m].item() == pytest.approx(
                statistics.fmean(expected[split][m]), rel=1e-6)
            assert got[f"{split}_acc"][m].item() == pytest.approx(
                statistics.fmean(hits[split][m]), abs=1e-12)
    assert got["train_acc"][0].item() == 1.0
    assert 0.3 < got["test_acc"][1].item() < 0.9  # both kinds of pairs are in the test set


def test_model_metrics_of_a_model_do_not_depend_on_its_batch() -> None:
    p = 11
    cfg = TransformerConfig(d_vocab=p, n_ctx=2, d_model=16, n_heads=4, n_layers=1)
    is_train = torch.as_tensor(make_dataset(p, 0.8, 0)["is_train"].to_numpy(copy=True))
    triples = gs_triples(p, 20, 0)
    group = BatchedTransformer.from_seeds(cfg, [0, 1, 2], [0.0, 0.5, 1.0])
    alone = BatchedTransformer.from_seeds(cfg, [1], [0.5])
    got = model_metrics(group, p, triples, 4, is_train)
    want = model_metrics(alone, p, triples, 4, is_train)
    assert set(got) == {"train_loss", "test_loss", "train_acc", "test_acc",
                        "gradient_symmetricity", "gradient_symmetricity_exact",
                        "distance_irrelevance", "distance_irrelevance_correct", "circularity",
                        "circularity_published", "param_norm"}
    for k, v in want.items():
        assert got[k][1].item() == pytest.approx(v[0].item(), rel=1e-5, abs=1e-6), k
    assert got["gradient_symmetricity"][0].item() != pytest.approx(
        got["gradient_symmetricity"][2].item(), abs=1e-3)


def test_exact_gs_is_the_mean_over_every_triple_and_100_triples_estimate_it() -> None:
    # Brute force: the GS of every single triple (a, b, c), one at a time, averaged.
    from clockpizza.analysis.metrics import gradient_symmetricity_exact

    p = 7
    cfg = TransformerConfig(d_vocab=p, n_ctx=2, d_model=8, n_heads=2, n_layers=1)
    model = BatchedTransformer.from_seeds(cfg, [0, 1], [1.0, 0.3])
    every = torch.tensor([(a, b, c) for a in range(p) for b in range(p) for c in range(p)])
    per_triple = torch.stack([gradient_symmetricity(model, p, t[None]) for t in every])
    exact = gradient_symmetricity_exact(model, p)
    assert torch.allclose(exact, per_triple.mean(dim=0), atol=1e-9)
    sample = gradient_symmetricity(model, p, gs_triples(p, 100, 0))
    spread = per_triple.std(dim=0) / 10  # standard error of a 100-triple mean
    assert ((sample - exact).abs() < 4 * spread + 1e-9).all()


# ---------------------------------------------------------------------------------------------
# The published tables' variants


def test_the_published_di_reads_the_largest_incorrect_logit() -> None:
    p = 7
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, p * p, p + 3, generator=gen)  # a vocabulary larger than p, as ablated
    got = largest_incorrect_logits(logits, p)
    for m in range(2):
        for a in range(p):
            for b in range(p):
                row = logits[m, a * p + b].tolist()
                want = max(x for c, x in enumerate(row) if c != (a + b) % p)
                assert got[m, a, b].item() == want
    # A clock-like correct logit does not make the wrong-logit DI a clock's: they differ.
    assert distance_irrelevance(got).shape == (2,)


def naive_circularity_all_rows(rows: np.ndarray, p: int, n: int) -> float:
    """The notebook's variant by hand: PCA (centred SVD) over every row, the DFT of each
    component's first p entries, normalised by the component's energy over all rows."""
    x = rows - rows.mean(axis=0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    out = []
    for j in range(n):
        v = u[:, j] * s[j]
        spectrum = [abs(sum(v[t] * cmath.exp(-2j * math.pi * k * t / p) for t in range(p))) ** 2
                    for k in range(p)]
        best = max(spectrum[k] + (spectrum[p - k] if p - k != k else 0.0)
                   for k in range(1, p // 2 + 1))
        out.append(best / (p * float((v ** 2).sum())))
    return statistics.fmean(out)


def test_circularity_published_equals_specs_without_extra_rows_and_differs_with_them() -> None:
    p, d = 13, 10
    gen = torch.Generator().manual_seed(0)
    t = torch.arange(p, dtype=torch.float64)
    ring = torch.stack([torch.cos(2 * math.pi * 3 * t / p), torch.sin(2 * math.pi * 3 * t / p)],
                       dim=1)
    w = torch.cat([ring, 0.05 * torch.randn(p, d - 2, generator=gen, dtype=torch.float64)], 1)
    spec = circularity(w, 2).item()
    assert circularity(w, 2, p=p).item() == pytest.approx(spec, abs=1e-12)
    # diff_vocab-like: p more rows (operand b's tokens), here unrelated to the circle.
    extra = torch.cat([w, torch.randn(p, d, generator=gen, dtype=torch.float64)])
    got = circularity(extra, 2, p=p).item()
    assert got == pytest.approx(naive_circularity_all_rows(extra.numpy(), p, 2), abs=1e-9)
    assert circularity(extra[:p], 2).item() == pytest.approx(spec, abs=1e-12)
    assert got < spec - 0.2
