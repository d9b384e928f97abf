"""The paper's per-model metrics (SPEC.md, "Metrics"), batched over a leading model dimension.

They take any batched model of :mod:`clockpizza.science.architectures` (transformer or
attention-free), and the run's token encoding (``diff_vocab``, ``eqn_sign``): with ``diff_vocab``
operand b is token b + p, so its embedding is ``W_E[b + p]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from clockpizza.science.architectures import BatchedModel
from clockpizza.science.data import all_pairs, encode


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


def split_scores(logits: Tensor, p: int, is_train: Tensor) -> dict[str, Tensor]:
    """Train and test loss (float64 cross entropy) and accuracy from all-pair logits."""
    y = _labels(p, logits.device)
    logp = logits.double().log_softmax(dim=-1)  # [M, p², V]
    nll = -logp.gather(-1, y.view(1, -1, 1).expand(logp.shape[0], -1, 1)).squeeze(-1)
    hit = (logits.argmax(dim=-1) == y).double()  # [M, p²]
    out = {}
    for name, mask in (("train", is_train), ("test", ~is_train)):
        out[f"{name}_loss"] = nll[:, mask].mean(dim=-1)
        out[f"{name}_acc"] = hit[:, mask].mean(dim=-1)
    return out


def distance_irrelevance(table: Tensor) -> Tensor:
    """Distance irrelevance of correct-logit tables ``[..., p, p]`` indexed by (a, b).

    ``DI = mean_δ( std_s L[s, δ] ) / std_{s,δ} L[s, δ]`` with s = (a + b) mod p,
    δ = (a − b) mod p and population standard deviations (SPEC.md). For fixed δ the pairs are
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
    """The fixed (a, b, c) triples, uniform on 0..p-1, shared by every model: ``[n, 3]``."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, p, (n, 3), generator=gen)


def gradient_symmetricity(model: BatchedModel, p: int, triples: Tensor, *,
                          diff_vocab: bool = False, eqn_sign: bool = False) -> Tensor:
    """Mean cosine similarity of ∂logit_c/∂W_E[a] (position 0) and ∂logit_c/∂W_E[b] (position 1).

    The gradients are taken with respect to the looked-up embedding rows, before W_pos is added
    (SPEC.md). Pizza ≈ 1 (the output depends on E_a + E_b), clock clearly lower. ``[M]``.
    The rows are whatever the model looks up: ``W_E[b + p]`` with ``diff_vocab``, ``E2[b]`` for
    model X.
    """
    device = model.attn_rate.device
    t = triples.to(device)
    tokens = encode(t[:, 0], t[:, 1], p, diff_vocab=diff_vocab, eqn_sign=eqn_sign)  # [n, n_ctx]
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
    random triples estimates (SPEC.md draws 100), without its sampling error. ``[M]``.

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


def circularity(w_e: Tensor, n_components: int = 4) -> Tensor:
    """Circularity of token embeddings ``[..., p, d]`` (rows of tokens 0..p-1).

    PCA of the rows; each of the first ``n_components`` principal components is a length-p
    vector over tokens; its circularity is the share of its energy in the strongest Fourier pair
    ±k (k ≠ 0): ``max_k (|X_k|² + |X_{p−k}|²) / Σ_j |X_j|²``. The mean over components is
    returned: ≈ 1 for clean circles, low for noise. ``[...]``.
    """
    x = w_e.double()
    x = x - x.mean(dim=-2, keepdim=True)
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    k = min(n_components, s.shape[-1])
    pcs = u[..., :k] * s[..., None, :k]  # [..., p, k] scores of each token
    power = torch.fft.fft(pcs, dim=-2).abs().square()  # [..., p, k]
    p = power.shape[-2]
    freqs = torch.arange(1, p // 2 + 1, device=x.device)
    pair = power[..., freqs, :] + torch.where(
        (freqs == p - freqs).view(-1, 1), 0.0, power[..., (p - freqs) % p, :]
    )  # [..., p//2, k]
    share = pair.max(dim=-2).values / power.sum(dim=-2).clamp_min(1e-300)
    return share.mean(dim=-1)


def param_norm(model: BatchedModel) -> Tensor:
    """L2 norm of all of a model's parameters, ``[M]``."""
    sq = [p.detach().double().flatten(1).square().sum(dim=1) for p in model.parameters()]
    return torch.stack(sq).sum(dim=0).sqrt()


def model_metrics(model: BatchedModel, p: int, triples: Tensor | None, n_components: int,
                  is_train: Tensor, *, diff_vocab: bool = False,
                  eqn_sign: bool = False) -> dict[str, Tensor]:
    """Loss, accuracy, GS, DI, circularity and parameter norm of every model, ``{name: [M]}``.

    GS is averaged over ``triples [n, 3]``, or over all p³ triples when ``triples`` is None.

    ``is_train [p²]`` marks the training pairs in (a, b) row-major order. Circularity is that of
    the rows of tokens 0..p-1 of ``embed.W_E`` (the a operand's embedding, for X ``E1``).
    """
    enc = {"diff_vocab": diff_vocab, "eqn_sign": eqn_sign}
    logits = all_pair_logits(model, p, **enc)
    return split_scores(logits, p, is_train.to(logits.device)) | {
        "gradient_symmetricity": (gradient_symmetricity_exact(model, p, **enc) if triples is None
                                  else gradient_symmetricity(model, p, triples, **enc)),
        "distance_irrelevance": distance_irrelevance(correct_logits(logits, p)),
        "circularity": circularity(model.embed.W_E.detach()[:, :p], n_components),
        "param_norm": param_norm(model),
    }
