"""Per-circle analysis of the token embedding (docs/specification.md, "Per-circle analysis"; paper
§4-5).

What is computed, precisely, so that an independent implementation can be compared with it:

1. **Principal components.** ``X = W_E[:p]`` (the rows of tokens 0..p-1, a p × d matrix) in
   float64, centred over tokens: ``Xc = X − μ``. SVD ``Xc = U S Vᵀ``; component j has scores
   ``U[:, j] S[j]`` (a length-p vector over tokens), direction ``V[:, j]`` and variance ``S[j]²``.
2. **Frequencies.** For a length-p score vector x with DFT X, the power of frequency k
   (1 ≤ k ≤ p // 2) is ``|X_k|² + |X_{p−k}|²`` (counted once when k = p − k). A component's
   dominant frequency is the k of largest power.
3. **Pairing.** Only the first ``2 · max_circles`` components are used. Going down them in
   order, each component not yet paired is paired with the next unpaired component (among those)
   whose dominant frequency is the same; a component with no such partner belongs to no circle.
   Clean circles put a circle's cos and sin in consecutive components, so this equals pairing
   (1, 2), (3, 4), ... there; it differs only where two circles have near-equal radii.
4. **A circle's numbers.** Frequency k: the frequency of largest summed power of its two
   components. Variance share: ``(S[a]² + S[b]²) / Σ_j S[j]²``. Circularity: the share of the
   two components' summed energy at ±k. Circles below ``min_var_share`` are dropped.
5. **Keeping only that circle.** The embedding rows of tokens 0..p-1 become
   ``μ + (Xc[t] · v_a) v_a + (Xc[t] · v_b) v_b`` (the mean is kept, every other direction is
   projected out); rows of other tokens (``diff_vocab``, ``eqn_sign``) are left unchanged. The
   rest of the model is unchanged.
6. **Logit tensor.** With that embedding, ``L[a, b, c] = logits(a, b)[c]`` for every pair
   (a, b) and every c in 0..p-1: a p × p × p tensor.
7. **FVE.** The logit tensor and each template are standardised over all p³ entries (mean 0,
   population standard deviation 1); the FVE of a template is the paper's: its notebook's
   ``explained_variance_score(standardised logits, standardised template)``, which for
   standardised tensors is ``2ρ − 1`` with ρ their Pearson correlation over the p³ entries
   (signed: an unrelated template scores −1, not 0). With w = 2πk/p (k the circle's frequency):

   - ``Q_clock = cos(w(a + b − c))``
   - ``Q_pizza = 2|cos(w(a − b)/2)| · (|cos(w(a + b − c)/2)| − |sin(w(a + b − c)/2)|)``
   - ``Q_acc = −(cos(2w'a − w'c) + cos(2w'b − w'c))`` with w' = 2πh/p, h = k · 2⁻¹ mod p: an
     accompanying circle's *embedding* turns at twice the frequency of the pizza it accompanies
     (docs/specification.md), so the template is evaluated at half the circle's own frequency (mod
     p; needs an
     odd p, otherwise FVE_acc is NaN). For p = 59, a circle at k = 10 is tested against the
     Q_acc of the pizza at k = 5.

   The *centred* FVE (``fve_*_centred``) is the same after the logits' mean over (a, b) at each
   c is subtracted. Every template has a constant mean over (a, b) at each c, so that part of
   the logits (how the rest of the network, fed the mean embedding, favours some outputs over
   others) is variance no template can explain; in a clock whose circles differ in size it
   dominates the smaller circles' tensors (the authors' Model B, README "Circles").
8. **Type.** The template of largest FVE ("clock", "pizza", "accompanying"), or "none" when all
   three are below ``min_fve``; the paper's FVE by default, the centred one with
   ``circles.type_from: centred``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from clockpizza.io.table import CIRCLE_COLUMNS
from clockpizza.science.data import all_pairs, encode
from clockpizza.science.model import BatchedTransformer

CIRCLE_TYPES = ("clock", "pizza", "accompanying", "none")
FVE_SOURCES = ("paper", "centred")  # circles.type_from
TEMPLATES = ("clock", "pizza", "accompanying")  # order of the FVE columns

# One forward pass holds about p² · 12 · d_model floats per model copy (residual, keys, values,
# MLP at the last position); copies are batched up to this many bytes.
_FORWARD_BUDGET_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Components:
    """Principal components of one model's token embeddings (float64, on the CPU)."""

    mean: Tensor  # [d]
    scores: Tensor  # [p, r]: token t's coordinate along each component
    directions: Tensor  # [r, d]: orthonormal rows
    variance: Tensor  # [r]: S², largest first

    @property
    def total_variance(self) -> float:
        return float(self.variance.sum())


@dataclass(frozen=True)
class Circle:
    """One circle of the embedding: a pair of principal components sharing a frequency."""

    index: int  # 0, 1, ... in the order of its first component
    pc_a: int  # 0-based component indices, pc_a < pc_b
    pc_b: int
    freq: int  # k in 1..p // 2
    var_share: float  # share of the embedding's total variance in this circle's plane
    circularity: float  # share of the pair's energy at frequency ±k


def principal_components(w_e: Tensor) -> Components:
    """PCA of token embeddings ``[p, d]`` (rows of tokens 0..p-1), step 1 of the module doc."""
    x = w_e.detach().to("cpu", torch.float64)
    mean = x.mean(dim=0)
    u, s, vh = torch.linalg.svd(x - mean, full_matrices=False)
    return Components(mean=mean, scores=u * s, directions=vh, variance=s.square())


def frequency_power(scores: Tensor) -> Tensor:
    """Power of each frequency pair ±k of score vectors ``[p, r]``: ``[p // 2, r]``, row k − 1.

    The share ``frequency_power(x).max(0) / energy`` is the circularity of docs/specification.md.
    """
    p = scores.shape[0]
    power = torch.fft.fft(scores.to(torch.float64), dim=0).abs().square()  # [p, r]
    k = torch.arange(1, p // 2 + 1)
    mirror = power[(p - k) % p]
    return power[k] + torch.where((k == p - k).view(-1, 1), 0.0, mirror)


def find_circles(w_e: Tensor, max_circles: int, min_var_share: float) -> list[Circle]:
    """The circles of token embeddings ``[p, d]``, steps 1-4 of the module doc."""
    comp = principal_components(w_e)
    n = min(2 * max_circles, comp.scores.shape[1])
    if comp.total_variance <= 0 or n < 2:
        return []
    power = frequency_power(comp.scores[:, :n])  # [p // 2, n]
    energy = comp.scores[:, :n].square().sum(dim=0)  # [n]; Parseval: Σ power = p · energy
    dominant = power.argmax(dim=0).tolist()
    partner: dict[int, int] = {}
    used: set[int] = set()
    for i in range(n):
        if i in used:
            continue
        j = next((j for j in range(i + 1, n) if j not in used and dominant[j] == dominant[i]),
                 None)
        if j is not None:
            partner[i] = j
            used |= {i, j}
    p = w_e.shape[0]
    circles = []
    for a, b in sorted(partner.items()):
        pair_power = power[:, a] + power[:, b]
        k = int(pair_power.argmax())
        share = float((comp.variance[a] + comp.variance[b]) / comp.total_variance)
        if share < min_var_share:
            continue
        circ = float(pair_power[k] / (p * (energy[a] + energy[b])))
        circles.append(Circle(index=len(circles), pc_a=a, pc_b=b, freq=k + 1, var_share=share,
                              circularity=circ))
    return circles


def restrict_embedding(w_e: Tensor, p: int, comp: Components, circle: Circle) -> Tensor:
    """``W_E [d_vocab, d]`` with tokens 0..p-1 kept only in the circle's plane (step 5)."""
    plane = comp.directions[[circle.pc_a, circle.pc_b]]  # [2, d]
    tokens = comp.mean + (comp.scores[:, [circle.pc_a, circle.pc_b]] @ plane)  # [p, d]
    out = w_e.detach().clone()
    out[:p] = tokens.to(out)
    return out


def half_frequency(k: int, p: int) -> int | None:
    """h with 2h ≡ ±k (mod p), folded into 1..p // 2; None for even p (2 has no inverse)."""
    if p % 2 == 0:
        return None
    h = (k * (p + 1) // 2) % p
    return min(h, p - h)


def templates(p: int, k: int) -> Tensor:
    """Q_clock, Q_pizza, Q_acc of frequency k over (a, b, c): ``[3, p, p, p]`` float64 (step 7)."""
    r = torch.arange(p, dtype=torch.float64)
    a, b, c = r.view(p, 1, 1), r.view(1, p, 1), r.view(1, 1, p)
    w = 2 * math.pi * k / p
    theta = w * (a + b - c)
    clock = torch.cos(theta)
    pizza = (2 * torch.cos(w * (a - b) / 2).abs()
             * (torch.cos(theta / 2).abs() - torch.sin(theta / 2).abs()))
    h = half_frequency(k, p)
    if h is None:
        acc = torch.full((p, p, p), math.nan, dtype=torch.float64)
    else:
        v = 2 * math.pi * h / p
        acc = -(torch.cos(2 * v * a - v * c) + torch.cos(2 * v * b - v * c))
    return torch.stack(torch.broadcast_tensors(clock, pizza, acc))


def _standardise(x: Tensor) -> Tensor:
    flat = x.flatten(-3)
    flat = flat - flat.mean(dim=-1, keepdim=True)
    return flat / flat.std(dim=-1, correction=0, keepdim=True)


def fve(logits: Tensor, template: Tensor) -> Tensor:
    """Fraction of variance of logit tensors ``[..., p, p, p]`` explained by templates, the paper's.

    Both are standardised over their p³ entries; the result is sklearn's
    ``explained_variance_score`` of one by the other, ``1 − Var(L̂ − Q̂) / Var(L̂) = 2ρ − 1``
    (ρ the mean of the product, their correlation), signed, broadcast over leading dimensions.
    """
    rho = (_standardise(logits.double()) * _standardise(template.double())).mean(dim=-1)
    return 2 * rho - 1


def centre_outputs(logits: Tensor) -> Tensor:
    """Logit tensors ``[..., p(a), p(b), p(c)]`` less their mean over (a, b) at each c."""
    return logits - logits.mean(dim=(-3, -2), keepdim=True)


def circle_type(fves: tuple[float, float, float], min_fve: float) -> str:
    """The template with the largest FVE, or "none" when every FVE is below ``min_fve``."""
    arr = np.asarray(fves, dtype=np.float64)
    if not np.any(arr >= min_fve):  # NaN compares False: a NaN FVE never wins
        return "none"
    return TEMPLATES[int(np.nanargmax(arr))]


@torch.no_grad()
def logit_tensors(model: BatchedTransformer, model_index: list[int], w_e: Tensor,
                  p: int, *, diff_vocab: bool = False, eqn_sign: bool = False) -> Tensor:
    """``L[n, a, b, c]`` of model ``model_index[n]`` run with embedding ``w_e[n]``.

    ``w_e [N, d_vocab, d]``; the other weights and the attention rate are those of the model.
    Returns float64 ``[N, p, p, p]`` on the CPU.
    """
    device = model.attn_rate.device
    a, b = all_pairs(p, device)
    tokens = encode(a, b, p, diff_vocab=diff_vocab, eqn_sign=eqn_sign)
    per_copy = p * p * 12 * model.cfg.d_model * 4
    chunk = max(1, _FORWARD_BUDGET_BYTES // per_copy)
    named = dict(model.named_parameters())
    out = []
    for start in range(0, len(model_index), chunk):
        idx = torch.as_tensor(model_index[start:start + chunk], device=device)
        params = {k: v.detach()[idx] for k, v in named.items()}
        params["embed.W_E"] = w_e[start:start + chunk].to(device, params["embed.W_E"].dtype)
        copy = BatchedTransformer(model.cfg, params, model.attn_rate[idx])
        logits = copy(tokens)[..., :p]  # [n, p², p]
        out.append(logits.double().cpu().view(-1, p, p, p))
    return torch.cat(out) if out else torch.zeros(0, p, p, p, dtype=torch.float64)


def analyse_models(model: BatchedTransformer, p: int, *, max_circles: int, min_var_share: float,
                   min_fve: float, type_from: str = "paper", diff_vocab: bool = False,
                   eqn_sign: bool = False) -> list[pd.DataFrame]:
    """Circles and their FVEs for every model of a batch: one frame per model.

    ``type_from`` is "paper" (circle types from the paper's FVE) or "centred" (from the
    centred FVE, module doc step 7).

    Each frame has the columns of ``CIRCLE_COLUMNS`` except ``run_id`` (left for the caller),
    one row per circle, in the order of :func:`find_circles`.
    """
    if type_from not in FVE_SOURCES:
        raise ValueError(f"type_from = {type_from!r}: must be one of {', '.join(FVE_SOURCES)}")
    w_all = model.embed.W_E.detach()
    found: list[tuple[int, Components, Circle]] = []
    for i in range(model.n_models):
        comp = principal_components(w_all[i, :p])
        found += [(i, comp, c) for c in find_circles(w_all[i, :p], max_circles, min_var_share)]
    restricted = [restrict_embedding(w_all[i].cpu(), p, comp, c) for i, comp, c in found]
    tensors = logit_tensors(model, [i for i, _, _ in found],
                            torch.stack(restricted) if restricted else w_all[:0].cpu(), p,
                            diff_vocab=diff_vocab, eqn_sign=eqn_sign)
    rows: list[list[dict[str, object]]] = [[] for _ in range(model.n_models)]
    cache: dict[int, Tensor] = {}
    for (i, _, c), logits in zip(found, tensors, strict=True):
        if c.freq not in cache:
            cache[c.freq] = templates(p, c.freq)
        f = fve(logits, cache[c.freq]).tolist()
        g = fve(centre_outputs(logits), cache[c.freq]).tolist()
        typed = f if type_from == "paper" else g
        rows[i].append({
            "circle": c.index, "pc_a": c.pc_a, "pc_b": c.pc_b, "freq": c.freq,
            "var_share": c.var_share, "circularity": c.circularity,
            "fve_clock": f[0], "fve_pizza": f[1], "fve_acc": f[2],
            "fve_clock_centred": g[0], "fve_pizza_centred": g[1], "fve_acc_centred": g[2],
            "type": circle_type((typed[0], typed[1], typed[2]), min_fve),
        })
    cols = [c for c in CIRCLE_COLUMNS if c != "run_id"]
    return [pd.DataFrame(r, columns=cols) for r in rows]


def run_summary(circles: pd.DataFrame) -> dict[str, object]:
    """The per-run columns of the runs table from one run's circle rows.

    - ``n_circles``: circles found (rows).
    - ``dominant_circle_type``: type of the circle of largest variance share ("none" if none).
    - ``fve_clock_mean``, ``fve_pizza_mean``: unweighted means over the circles (NaN if none).
    - ``clock_circle_share``, ``pizza_circle_share``: of the variance in all the run's circles,
      the share in clock circles, and in pizza and accompanying circles (an accompanying circle
      counts with the pizza it accompanies); circles of type "none" count in the total only, so
      a verdict needs typed circles that carry most of the circles' variance. NaN without
      circles. This is the circle evidence the phase rule reads.
    """
    if circles.empty:
        return {"n_circles": 0, "dominant_circle_type": "none", "fve_clock_mean": math.nan,
                "fve_pizza_mean": math.nan, "clock_circle_share": math.nan,
                "pizza_circle_share": math.nan}
    total = float(circles["var_share"].sum())
    kinds = circles["type"]

    def share(types: tuple[str, ...]) -> float:
        held = float(circles.loc[kinds.isin(types), "var_share"].sum())
        return held / total if total > 0 else math.nan

    return {
        "n_circles": len(circles),
        "dominant_circle_type": str(circles.loc[circles["var_share"].idxmax(), "type"]),
        "fve_clock_mean": float(circles["fve_clock"].mean()),
        "fve_pizza_mean": float(circles["fve_pizza"].mean()),
        "clock_circle_share": share(("clock",)),
        "pizza_circle_share": share(("pizza", "accompanying")),
    }
