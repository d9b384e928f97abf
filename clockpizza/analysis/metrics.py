"""The paper's per-model metrics (docs/specification.md, "Metrics"), batched over a leading model
dimension.

They take any batched model of :mod:`clockpizza.science.architectures` (transformer or
attention-free), and the run's token encoding (``diff_vocab``, ``eqn_sign``): with ``diff_vocab``
operand b is token b + p, so its embedding is ``W_E[b + p]``.
"""

from __future__ import annotations

import itertools
import random

import torch
from torch import Tensor

from clockpizza.science.architectures import BatchedModel
from clockpizza.science.data import all_pairs, encode, vocab_size


@torch.no_grad()
def all_pair_logits(model: BatchedModel, p: int, *, diff_vocab: bool = False,
                    eqn_sign: bool = False) -> Tensor:
    """Last-position logits of every pair (a, b) in row-major order, ``[M, p², V]``."""
    a, b = all_pairs(p, model.attn_rate.device)
    return model(encode(a, b, p, diff_vocab=diff_vocab, eqn_sign=eqn_sign))


def _labels(p: int, device: torch.device) -> Tensor:
    a, b = all_pairs(p, device)
    return (a + b) % p


def correct_logits(logits: Tensor, p: int) -> Tensor:
    """``L[m, a, b] = logits_m(a, b)[(a + b) mod p]`` from all-pair logits, ``[M, p, p]``."""
    y = _labels(p, logits.device)
    return logits.gather(-1, y.view(1, -1, 1).expand(logits.shape[0], -1, 1)).view(-1, p, p)


def largest_incorrect_logits(logits: Tensor, p: int) -> Tensor:
    """The largest logit of a wrong class for every pair, ``[M, p, p]`` indexed by (a, b).

    The correct class is set to −∞ and the maximum is taken over the whole vocabulary: the
    quantity whose distance irrelevance the paper's published tables report (docs/specification.md,
    ``paper/README.md``; it reproduces the released checkpoints to 4 decimals).
    """
    y = _labels(p, logits.device).view(1, -1, 1).expand(logits.shape[0], -1, 1)
    wrong = logits.scatter(-1, y, float("-inf"))  # [M, p², V]
    return wrong.max(dim=-1).values.view(-1, p, p)


def split_scores(logits: Tensor, p: int, is_train: Tensor) -> dict[str, Tensor]:
    """Train and test loss (float64 cross entropy) and accuracy from all-pair logits.

    ``is_train`` is ``[p²]`` (one split for every model) or ``[M, p²]`` (a split per model).
    """
    y = _labels(p, logits.device)
    logp = logits.double().log_softmax(dim=-1)  # [M, p², V]
    nll = -logp.gather(-1, y.view(1, -1, 1).expand(logp.shape[0], -1, 1)).squeeze(-1)
    hit = (logits.argmax(dim=-1) == y).double()  # [M, p²]
    out = {}
    for name, mask in (("train", is_train), ("test", ~is_train)):
        if mask.dim() == 1:  # one split shared by every model
            out[f"{name}_loss"] = nll[:, mask].mean(dim=-1)
            out[f"{name}_acc"] = hit[:, mask].mean(dim=-1)
        else:  # [M, p²]: each model its own split
            w = mask.double()
            out[f"{name}_loss"] = (nll * w).sum(dim=-1) / w.sum(dim=-1)
            out[f"{name}_acc"] = (hit * w).sum(dim=-1) / w.sum(dim=-1)
    return out


def distance_irrelevance(table: Tensor) -> Tensor:
    """Distance irrelevance of logit tables ``[..., p, p]`` indexed by (a, b).

    The table is the correct-class logit (the paper's text: :func:`correct_logits`) or the
    largest incorrect logit (its published tables: :func:`largest_incorrect_logits`).

    ``DI = mean_δ( std_s L[s, δ] ) / std_{s,δ} L[s, δ]`` with s = (a + b) mod p,
    δ = (a − b) mod p and population standard deviations (docs/specification.md). For fixed δ the
    pairs are
    (a, a − δ) for every a, so the row of δ is gathered directly (for odd p, a ↦ s is a bijection).
    Clock ≈ 1 (the correct logit ignores a − b); pizza small.
    """
    p = table.shape[-1]
    t = table.double()
    a = torch.arange(p, device=t.device)
    delta = torch.arange(p, device=t.device)
    b = (a.view(1, p) - delta.view(p, 1)) % p  # [δ, a] -> b
    by_delta = t[..., a.view(1, p).expand(p, p), b]  # [..., δ, a]
    within = by_delta.std(dim=-1, correction=0).mean(dim=-1)
    total = t.flatten(-2).std(dim=-1, correction=0)
    return within / total


def gs_triples(p: int, n: int, seed: int) -> Tensor:
    """The fixed (a, b, c) triples shared by every model: ``[n, 3]``.

    The paper's: the list ``[(a, b, c) for a in range(p) for b in range(p) for c in range(p)]``
    shuffled by Python's ``random.Random(seed).shuffle``, first ``n`` (docs/specification.md). With
    n = 100
    and seed 42 these are the triples behind the published values (they reproduce the released
    checkpoints' GS to 6 decimals; tests/test_paper_models.py).
    """
    if not 0 < n <= p**3:
        raise ValueError(f"n = {n}: must be in 1..p³ = {p**3}")
    triples = list(itertools.product(range(p), repeat=3))  # a outermost, c innermost
    random.Random(seed).shuffle(triples)
    return torch.tensor(triples[:n], dtype=torch.long)


def gradient_symmetricity(model: BatchedModel, p: int, triples: Tensor, *,
                          diff_vocab: bool = False, eqn_sign: bool = False,
                          paper_tokens: bool = False) -> Tensor:
    """Mean cosine similarity of ∂logit_c/∂W_E[a] (position 0) and ∂logit_c/∂W_E[b] (position 1).

    The gradients are taken with respect to the looked-up embedding rows, before W_pos is added
    (docs/specification.md). Pizza ≈ 1 (the output depends on E_a + E_b), clock clearly lower.
    ``[M]``.
    The rows are whatever the model looks up: ``W_E[b + p]`` with ``diff_vocab``, ``E2[b]`` for
    model X. ``paper_tokens`` reproduces the authors' evaluation code, which wrote operand b
    as token b even with ``diff_vocab`` (a token the model never saw at that position): that is
    what the published GS of a ``diff_vocab`` run measured (18c9ev5v5p: 0.997398 published,
    0.997373 with b + p). Without ``diff_vocab`` the two agree.
    """
    device = model.attn_rate.device
    t = triples.to(device)
    tokens = encode(t[:, 0], t[:, 1], p, diff_vocab=diff_vocab and not paper_tokens,
                    eqn_sign=eqn_sign)  # [n, n_ctx]
    if paper_tokens and diff_vocab and eqn_sign:
        tokens[:, -1] = vocab_size(p, diff_vocab=True, eqn_sign=True) - 1
    emb = model.embed_tokens(tokens).detach().requires_grad_(True)  # [M, n, n_ctx, d]
    with torch.enable_grad():
        logits = model.forward_embedded(emb)  # [M, n, V]
        chosen = logits.gather(-1, t[:, 2].view(1, -1, 1).expand(logits.shape[0], -1, 1))
        (grad,) = torch.autograd.grad(chosen.sum(), emb)  # models and triples are independent
    g = grad.double()
    return torch.cosine_similarity(g[:, :, 0], g[:, :, 1], dim=-1).mean(dim=-1)


def gradient_symmetricity_exact(model: BatchedModel, p: int, *, diff_vocab: bool = False,
                                eqn_sign: bool = False) -> Tensor:
    """Gradient symmetricity averaged over all p³ triples (a, b, c): the value that the mean over
    random triples estimates (docs/specification.md draws 100), without its sampling error. ``[M]``.

    One forward pass over all p² pairs, then one backward pass per output logit c.
    """
    a, b = all_pairs(p, model.attn_rate.device)
    tokens = encode(a, b, p, diff_vocab=diff_vocab, eqn_sign=eqn_sign)  # [p², n_ctx]
    emb = model.embed_tokens(tokens).detach().requires_grad_(True)  # [M, p², n_ctx, d]
    total = torch.zeros(emb.shape[0], dtype=torch.float64, device=emb.device)
    with torch.enable_grad():
        logits = model.forward_embedded(emb)  # [M, p², V]
        for c in range(p):
            (grad,) = torch.autograd.grad(logits[..., c].sum(), emb, retain_graph=c < p - 1)
            g = grad.double()
            total += torch.cosine_similarity(g[:, :, 0], g[:, :, 1], dim=-1).sum(dim=-1)
    return total / p**3


def circularity(w_e: Tensor, n_components: int = 4, p: int | None = None) -> Tensor:
    """Circularity of token embeddings ``[..., V, d]``.

    PCA of the rows; each of the first ``n_components`` principal components is a vector over
    tokens; its circularity is the share of its energy in the strongest Fourier pair ±k (k ≠ 0)
    of its entries over tokens 0..p-1: ``max_k (|X_k|² + |X_{p−k}|²) / (p · Σ_t x_t²)`` (by
    Parseval the denominator is ``Σ_j |X_j|²`` when the rows are exactly tokens 0..p-1). The mean
    over components is returned: ≈ 1 for clean circles, low for noise. ``[...]``.

    the specification's circularity passes the rows of tokens 0..p-1 (``W_E[:p]``; ``p`` None).
    With all
    ``V`` rows and ``p`` given, it is the authors' notebook's variant: PCA over every row (the
    b + p rows of ``diff_vocab``, the '=' row of ``eqn_sign`` too), frequencies read off the
    first p rows, energy counted over all rows; that is what the published column holds for
    ablated runs (18c9ev5v5p: 0.5276 against 0.9996 on ``W_E[:p]``). Without ablations V = p and
    the two are the same.
    """
    x = w_e.double()
    x = x - x.mean(dim=-2, keepdim=True)
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    k = min(n_components, s.shape[-1])
    pcs = u[..., :k] * s[..., None, :k]  # [..., V, k] scores of each token
    p = pcs.shape[-2] if p is None else p
    power = torch.fft.fft(pcs[..., :p, :], dim=-2).abs().square()  # [..., p, k]
    freqs = torch.arange(1, p // 2 + 1, device=x.device)
    pair = power[..., freqs, :] + torch.where(
        (freqs == p - freqs).view(-1, 1), 0.0, power[..., (p - freqs) % p, :]
    )  # [..., p//2, k]
    energy = p * pcs.square().sum(dim=-2)  # [..., k]
    share = pair.max(dim=-2).values / energy.clamp_min(1e-300)
    return share.mean(dim=-1)


def param_norm(model: BatchedModel) -> Tensor:
    """L2 norm of all of a model's parameters, ``[M]``."""
    sq = [p.detach().double().flatten(1).square().sum(dim=1) for p in model.parameters()]
    return torch.stack(sq).sum(dim=0).sqrt()


def model_metrics(model: BatchedModel, p: int, triples: Tensor | None, n_components: int,
                  is_train: Tensor, *, diff_vocab: bool = False,
                  eqn_sign: bool = False, exact: bool = True) -> dict[str, Tensor]:
    """Loss, accuracy, GS, DI, circularity and parameter norm of every model, ``{name: [M]}``.

    Where the paper's published tables and its text differ, both (docs/specification.md, "Metrics"):

    - ``gradient_symmetricity``: the mean over ``triples [n, 3]`` (the paper's: 100 triples of
      :func:`gs_triples` with seed 42), or over all p³ triples when ``triples`` is None;
      ``gradient_symmetricity_exact``: always the mean over all p³ triples.
    - ``distance_irrelevance``: of the largest incorrect logit (the published tables; the
      figures and the phase rule use it); ``distance_irrelevance_correct``: of the correct
      logit (the paper's text and notebook).
    - ``circularity``: the specification's, of the rows of tokens 0..p-1 of ``embed.W_E`` (the a
    operand's
      embedding, for X ``E1``); ``circularity_published``: the notebook's variant over all rows,
      which differs only with the ablations.

    ``is_train [p²]`` (or ``[M, p²]``, one split per model) marks the training pairs in (a, b)
    row-major order. ``exact=False`` skips the all-triples GS where ``triples`` are given (the
    training-dynamics snapshots; the column is then NaN).
    """
    enc = {"diff_vocab": diff_vocab, "eqn_sign": eqn_sign}
    logits = all_pair_logits(model, p, **enc)
    w_e = model.embed.W_E.detach()
    if exact or triples is None:
        gs_all = gradient_symmetricity_exact(model, p, **enc)
    else:
        gs_all = torch.full((model.n_models,), float("nan"), device=logits.device)
    return split_scores(logits, p, is_train.to(logits.device)) | {
        "gradient_symmetricity": (gs_all if triples is None
                                  else gradient_symmetricity(model, p, triples, **enc)),
        "gradient_symmetricity_exact": gs_all,
        "distance_irrelevance": distance_irrelevance(largest_incorrect_logits(logits, p)),
        "distance_irrelevance_correct": distance_irrelevance(correct_logits(logits, p)),
        "circularity": circularity(w_e[:, :p], n_components),
        "circularity_published": circularity(w_e, n_components, p=p),
        "param_norm": param_norm(model),
    }
