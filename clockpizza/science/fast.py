"""The fast training step: forward and backward of one-layer transformers written out by hand.

The same mathematics as :class:`~clockpizza.science.model.BatchedTransformer` with autograd
(docs/specification.md, "Model"), computed with fewer passes over memory and fewer FLOPs. Equal to
the
reference step to rounding (tests/test_fast_step.py compares both in float64 over hundreds of
steps and in float32 over one), not bit for bit, so it is a recorded setting (``train.engine``).

Three things make it fast on a CPU, where a step at width 32 is memory traffic, not FLOPs:

1. **Token tables.** In the first (only) block every position's residual is ``W_E[t] + W_pos[j]``:
   one of ``n_ctx · d_vocab`` vectors. Keys, values and the last position's query are computed
   once per table row (``n_ctx · d_vocab`` rows, not ``n_ctx · N`` examples), and the attention
   scores for *every* (last token, token) pair are one small batched matmul. An example looks its
   scores and values up. Their gradients are summed back into the tables (``index_add_``) and
   reach ``W_E``, ``W_pos``, ``W_Q``, ``W_K``, ``W_V`` through autograd on the small tables.
2. **Hand-written backward** for the per-example part (attention mixing over the n_ctx positions,
   ``W_O``, the MLP, ``W_U``, the float64 cross entropy), so each intermediate is touched the few
   times the chain rule needs, weight gradients are accumulated in place by ``baddbmm_``, and the
   loss's float64 tensor is turned into the logits' gradient without autograd's extra copies.
3. **Examples in chunks** small enough that a chunk's activations stay in the CPU's cache
   between its forward and its backward (on a GPU, one chunk: the whole batch).

Scope: one transformer block (the paper's main setting), ReLU or GeLU, any n_ctx, either split
kind, fp32 or tf32. Other runs use the reference step (:func:`supports`).
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from clockpizza.science.model import BatchedTransformer
from clockpizza.science.spec import fast_step_applies

# Examples per chunk on a CPU (at most; the batch is cut into near-equal chunks): small enough
# for a chunk's activations to stay in cache, chosen with python -m clockpizza.tools.bench.
CHUNK = 1400


def supports(model: object, precision: str) -> bool:
    """Whether the fast step computes this model's training step (else: the reference)."""
    return isinstance(model, BatchedTransformer) and fast_step_applies(model.cfg.n_layers,
                                                                      precision)


def default_chunk(model: BatchedTransformer, n_examples: int, device: torch.device) -> int:
    """Examples per chunk: the whole batch on a GPU, cache-sized on a CPU."""
    if device.type != "cpu" or CHUNK <= 0:
        return n_examples
    return math.ceil(n_examples / math.ceil(n_examples / CHUNK))


class FastStep:
    """The gradients (and, when asked, the logits) of a batch of one-layer transformers.

    ``tokens [N, n_ctx]`` and ``labels [N]`` are the training examples, shared by every model;
    ``weight [M, N]`` (or ``None``: ``1/N`` each) is each example's weight in each model's
    mean loss, so a per-run split is a weight of ``1/n_m`` on model m's own pairs and 0 elsewhere.
    """

    def __init__(self, model: BatchedTransformer, tokens: Tensor, labels: Tensor,
                 weight: Tensor | None = None, chunk: int | None = None) -> None:
        if not supports(model, "fp32"):
            raise ValueError("the fast step computes one-layer transformers only")
        self.model = model
        cfg = model.cfg
        self.n_ctx, self.vocab, self.h, self.e = cfg.n_ctx, cfg.d_vocab, cfg.n_heads, cfg.d_head
        n = len(labels)
        device = labels.device
        chunk = chunk or default_chunk(model, n, device)
        v, k = self.vocab, self.n_ctx
        pos = torch.arange(k, device=device)
        # Row of each example's position j in the flattened [n_ctx, V] token table, and of its
        # (last token, token at j) pair in the flattened [n_ctx, V, V] score table.
        value_rows = (pos * v + tokens).reshape(-1)  # [N * n_ctx]
        last = tokens[:, -1:]
        score_rows = (pos * v * v + last * v + tokens).reshape(-1)  # [N * n_ctx]
        dtype = model.unembed.W_U.dtype
        w = (torch.full((model.n_models, n), 1.0 / n, dtype=dtype, device=device)
             if weight is None else weight.to(dtype))
        m = model.n_models
        models = torch.arange(m, device=device).view(m, 1)
        self.chunks = [
            (value_rows[lo * k:hi * k], score_rows[lo * k:hi * k], tokens[lo:hi, -1],
             # each (model, example)'s label in the flattened [M, C, V] logits
             ((models * (hi - lo) + torch.arange(hi - lo, device=device)) * v
              + labels[lo:hi]).reshape(-1),
             w[:, lo:hi, None])
            for lo, hi in itertools.pairwise([*range(0, n, chunk), n])
        ]

    # ---------------------------------------------------------------------------------------

    def _tables(self) -> tuple[Tensor, Tensor, Tensor]:
        """Per model, built with autograd from the weights, rows first (so that summing an
        example's gradient into its row is a fast ``index_add_`` along dim 0): the attention
        scores of every (last token, token) pair at every position ``[n_ctx·V·V, M, h]``,
        every position's values ``[n_ctx·V, M, d]`` and the last position's residual
        ``[V, M, d]``."""
        mdl = self.model
        m, k, v, h, e = mdl.n_models, self.n_ctx, self.vocab, self.h, self.e
        d = h * e
        attn = mdl.blocks[0]["attn"]
        x = mdl.embed.W_E[:, None] + mdl.pos_embed.W_pos[:, :, None]  # [M, n_ctx, V, d]
        w_q, w_k, w_v = (t.permute(0, 2, 1, 3).reshape(m, d, d)
                         for t in (attn.W_Q, attn.W_K, attn.W_V))
        kv = torch.bmm(x.reshape(m, k * v, d), torch.cat([w_k, w_v], dim=-1))
        keys, values = kv.view(m, k * v, 2, d).unbind(dim=2)  # [M, n_ctx·V, d] each
        q = torch.bmm(x[:, -1], w_q)  # [M, V, d]
        # scores[(j, t_last, t), m, h] = q[m, t_last, h] · k[m, (j, t), h] / √e
        qh = q.view(m, v, h, e).permute(0, 2, 1, 3).reshape(m * h, v, e)
        kh = keys.view(m, k * v, h, e).permute(0, 2, 3, 1).reshape(m * h, e, k * v)
        s = torch.bmm(qh, kh) / math.sqrt(e)  # [M·h, V(last), n_ctx·V]
        scores = s.view(m, h, v, k, v).permute(3, 2, 4, 0, 1).reshape(k * v * v, m, h)
        return (scores, values.transpose(0, 1).contiguous(),
                x[:, -1].transpose(0, 1).contiguous())

    def __call__(self, keep_logits: bool = False) -> Tensor | None:
        """Write every parameter's ``.grad``: the gradient of the sum over models of each
        model's (weighted) mean cross entropy. With ``keep_logits``, also return the logits of
        this forward pass, ``[M, N, d_vocab]`` (for the history's losses and accuracies)."""
        mdl = self.model
        m, k, h, e = mdl.n_models, self.n_ctx, self.h, self.e
        d = h * e
        attn, mlp = mdl.blocks[0]["attn"], mdl.blocks[0]["mlp"]
        w_in, b_in, w_out, b_out = mlp.W_in, mlp.b_in, mlp.W_out, mlp.b_out
        w_u = mdl.unembed.W_U
        rate = mdl.attn_rate.view(1, 1, m, 1).to(w_in.dtype)
        gelu = mdl.cfg.act != "relu"
        scores_t, values_t, resid_t = self._tables()
        with torch.no_grad():
            w_o = attn.W_O.reshape(m, d, d)
            st, vt, rt = scores_t.detach(), values_t.detach(), resid_t.detach()
            g_scores, g_values, g_resid = (torch.zeros_like(t) for t in (st, vt, rt))
            g_wo, g_win, g_wout, g_wu = (torch.empty_like(t) for t in (w_o, w_in, w_out, w_u))
            g_bin, g_bout = torch.zeros_like(b_in), torch.zeros_like(b_out)
            kept = []
            for i, (v_rows, s_rows, last, labels, wt) in enumerate(self.chunks):
                beta = 1.0 if i else 0.0  # the first chunk overwrites the weight gradients
                c = len(last)
                # forward. Attention over the n_ctx positions from the tables, [C, n_ctx, M, h]
                a = st.index_select(0, s_rows).view(c, k, m, h).softmax(dim=1)
                pat = a * rate + (1 - rate)  # the paper's α·softmax + (1 − α)
                vals = vt.index_select(0, v_rows).view(c, k, m, h, e)
                z = (pat.unsqueeze(-1) * vals).sum(dim=1).view(c, m, d).transpose(0, 1)
                r = torch.baddbmm(rt.index_select(0, last).transpose(0, 1), z, w_o)  # [M, C, d]
                pre = torch.baddbmm(b_in[:, None], r, w_in)  # [M, C, 4d]
                hid = F.gelu(pre) if gelu else pre.relu_()
                r2 = torch.baddbmm(r + b_out[:, None], hid, w_out)  # [M, C, d]
                logits = torch.bmm(r2, w_u)  # [M, C, V]
                if keep_logits:
                    kept.append(logits.clone())
                g = _cross_entropy_grad(logits, labels, wt)
                # backward; weight gradients summed over the chunks in place
                g_wu.baddbmm_(r2.transpose(1, 2), g, beta=beta)
                g_r2 = torch.bmm(g, w_u.transpose(1, 2))  # [M, C, d]
                g_wout.baddbmm_(hid.transpose(1, 2), g_r2, beta=beta)
                g_bout += g_r2.sum(dim=1)
                g_hid = torch.bmm(g_r2, w_out.transpose(1, 2))  # [M, C, 4d]
                # in place: g_hid is not needed again, and a fresh [M, C, 4d] costs a pass
                g_pre = (torch.ops.aten.gelu_backward.grad_input(g_hid, pre, grad_input=g_hid)
                         if gelu else torch.ops.aten.threshold_backward.grad_input(
                             g_hid, hid, 0.0, grad_input=g_hid))
                g_win.baddbmm_(r.transpose(1, 2), g_pre, beta=beta)
                g_bin += g_pre.sum(dim=1)
                g_r = torch.baddbmm(g_r2, g_pre, w_in.transpose(1, 2))  # [M, C, d]
                g_wo.baddbmm_(z.transpose(1, 2), g_r, beta=beta)
                g_resid.index_add_(0, last, g_r.transpose(0, 1).contiguous())
                g_z = torch.bmm(g_r, w_o.transpose(1, 2)).transpose(0, 1).contiguous()
                g_z = g_z.view(c, 1, m, h, e)
                g_values.index_add_(0, v_rows, (pat.unsqueeze(-1) * g_z).view(c * k, m, d))
                g_a = (g_z * vals).sum(dim=-1) * rate  # [C, n_ctx, M, h]
                g_s = a * (g_a - (a * g_a).sum(dim=1, keepdim=True))  # softmax backward
                g_scores.index_add_(0, s_rows, g_s.view(c * k, m, h))
        params = (attn.W_Q, attn.W_K, attn.W_V, mdl.embed.W_E, mdl.pos_embed.W_pos)
        grads = torch.autograd.grad((scores_t, values_t, resid_t), params,
                                    (g_scores, g_values, g_resid))
        for p, gp in zip(params, grads, strict=True):
            # autograd returns W_Q/K/V's gradient in the layout of their permuted view; the
            # fused AdamW reads a gradient as laid out like its parameter (a strided one trains
            # wrong models), so every gradient is made contiguous
            p.grad = gp.contiguous()
        attn.W_O.grad = g_wo.view_as(attn.W_O)
        for p, gp in ((w_in, g_win), (b_in, g_bin), (w_out, g_wout), (b_out, g_bout),
                      (w_u, g_wu)):
            p.grad = gp
        return torch.cat(kept, dim=1) if keep_logits else None


def _cross_entropy_grad(logits: Tensor, labels: Tensor, weight: Tensor) -> Tensor:
    """d/dlogits of ``Σ_b weight[b] · CE(logits[b], label[b])``: ``weight · (softmax − onehot)``.

    ``logits [M, C, V]`` (overwritten), ``labels``: the label's index in ``logits.view(-1)`` for
    each (model, example), ``[M·C]``; ``weight [M, C, 1]``.

    docs/specification.md computes the loss in float64 because in float32 ``1 − p_label`` of a
    confident
    model rounds to a multiple of ~6e-8 (its loss to ~1.2e-7). This gradient never forms
    ``1 − p_label``: the label's entry is minus the sum of the other classes' probabilities,
    which float32 holds to its full relative precision however small it is. So it equals the
    float64 gradient rounded to float32, to a few ulps (tests/test_fast_step.py, confident models
    included), at a quarter of the cost on a CPU. The *reported* losses are still float64.
    """
    g = logits.softmax(dim=-1)
    flat = g.view(-1)
    flat[labels] = 0.0
    flat[labels] = g.sum(dim=-1).view(-1).neg_()
    return g.mul_(weight)
