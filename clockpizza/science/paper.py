"""The authors' released checkpoints (github.com/fjzzq2002/pizza, MIT) as batched models of ours.

The paper's code saved plain ``state_dict`` s in its own layout; ``paper/`` in this repository
holds a few of them converted, tensor for tensor, to safetensors (``paper/README.md``), each
with the authors' ``config.json`` beside it. This module maps that layout onto ours, so the
project's metrics, circle analysis, figures and TransformerLens export run on the authors' own
models unchanged:

============================  ====================================  =========================
paper (per model)             ours (per model)                      map
============================  ====================================  =========================
``embed.W_E [d, V]``          ``embed.W_E [V, d]``                  transpose
``pos_embed.W_pos [n, d]``    ``pos_embed.W_pos [n, d]``            as is
``attn.W_Q/W_K/W_V [h, e, d]``  ``attn.W_Q/W_K/W_V [h, d, e]``      transpose the last two
``attn.W_O [d, h·e]``         ``attn.W_O [h, e, d]``                transpose, split h·e
``attn.mask [n, n]``          —                                     dropped (never used: no mask)
``mlp.W_in [d_mlp, d]``       ``mlp.W_in [d, d_mlp]``               transpose
``mlp.W_out [d, d_mlp]``      ``mlp.W_out [d_mlp, d]``              transpose
``mlp.b_in``, ``mlp.b_out``   same                                  as is
``unembed.W_U [d, V]``        ``unembed.W_U [d, V]``                as is
============================  ====================================  =========================

The attention-free models (``model_type`` B or D in their config) map ``embed.weight [p, e]`` to
``embed.W_E``, ``unembed.weight [p, h]`` to ``unembed.W_U [h, p]`` (transposed) and keep
``l1``/``l2``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file
from torch import Tensor

from clockpizza.science.architectures import ArchConfig, BatchedModel, load_model
from clockpizza.science.data import context_length, vocab_size
from clockpizza.science.mlp_family import MLPConfig
from clockpizza.science.mlp_family import param_shapes as mlp_param_shapes
from clockpizza.science.model import TransformerConfig, param_shapes, stack

# The authors' activation names -> ours.
_ACTS = {"ReLU": "relu", "GeLU": "gelu"}


@dataclass(frozen=True)
class PaperRun:
    """One released checkpoint: its id, what it is, and its weights in our layout."""

    runid: str
    family: str  # "transformer", or the attention-free model "B" / "D"
    attn_rate: float | None  # the config's attn_coeff (α); None for the attention-free models
    p: int
    diff_vocab: bool
    eqn_sign: bool
    cfg: ArchConfig
    weights: dict[str, Tensor]  # our names and per-model shapes

    def model(self) -> BatchedModel:
        """The checkpoint as a batch of one model of ours, on the CPU."""
        return load_model(self.cfg, stack([self.weights]), [self.attn_rate])


def transformer_weights(state: dict[str, Tensor], cfg: TransformerConfig) -> dict[str, Tensor]:
    """The paper's transformer ``state_dict`` in our names and shapes (module table above)."""
    h, e, d = cfg.n_heads, cfg.d_head, cfg.d_model
    out = {"embed.W_E": state["embed.W_E"].T, "pos_embed.W_pos": state["pos_embed.W_pos"],
           "unembed.W_U": state["unembed.W_U"]}
    for i in range(cfg.n_layers):
        a, m = f"blocks.{i}.attn", f"blocks.{i}.mlp"
        for w in ("W_Q", "W_K", "W_V"):
            out[f"{a}.{w}"] = state[f"{a}.{w}"].transpose(-1, -2)  # [h, e, d] -> [h, d, e]
        out[f"{a}.W_O"] = state[f"{a}.W_O"].T.reshape(h, e, d)  # [d, h·e] -> [h, e, d]
        out[f"{m}.W_in"] = state[f"{m}.W_in"].T
        out[f"{m}.W_out"] = state[f"{m}.W_out"].T
        out[f"{m}.b_in"] = state[f"{m}.b_in"]
        out[f"{m}.b_out"] = state[f"{m}.b_out"]
    return _checked({k: v.float().contiguous() for k, v in out.items()}, param_shapes(cfg))


def mlp_weights(state: dict[str, Tensor], cfg: MLPConfig) -> dict[str, Tensor]:
    """The paper's attention-free ``state_dict`` (B, D) in our names and shapes."""
    out = {"embed.W_E": state["embed.weight"], "unembed.W_U": state["unembed.weight"].T}
    for k, v in state.items():
        if k.startswith(("l1.", "l2.")):
            out[k] = v
    return _checked({k: v.float().contiguous() for k, v in out.items()}, mlp_param_shapes(cfg))


def _checked(weights: dict[str, Tensor], shapes: dict[str, tuple[int, ...]]) -> dict[str, Tensor]:
    got = {k: tuple(v.shape) for k, v in weights.items()}
    if got != shapes:
        diff = sorted(k for k in set(got) | set(shapes) if got.get(k) != shapes.get(k))
        raise ValueError(f"checkpoint does not match its config at {diff}")
    return weights


def load_paper_run(checkpoint: str | Path) -> PaperRun:
    """A released checkpoint ``<runid>.safetensors`` with its config ``<runid>.json`` beside it."""
    path = Path(checkpoint)
    config_path = path.with_suffix(".json")
    try:
        config = json.loads(config_path.read_text())
        state = load_file(str(path))
    except (OSError, ValueError) as e:
        raise RuntimeError(f"{path}: unreadable paper checkpoint or config ({e})") from e
    runid = str(config.get("runid", path.stem))
    p = int(config["C"])
    if "model_type" in config:  # the attention-free family
        family = str(config["model_type"])
        cfg = MLPConfig(family=family, d_vocab=p, width=int(config["d_hidden"]))
        return PaperRun(runid, family, None, p, False, False, cfg, mlp_weights(state, cfg))
    diff_vocab, eqn_sign = bool(config["diff_vocab"]), bool(config["eqn_sign"])
    tcfg = TransformerConfig(
        d_vocab=vocab_size(p, diff_vocab=diff_vocab, eqn_sign=eqn_sign),
        n_ctx=context_length(eqn_sign=eqn_sign), d_model=int(config["d_model"]),
        n_heads=int(config["n_heads"]), n_layers=int(config["n_layers"]),
        act=_ACTS[str(config["act_fn"])])
    return PaperRun(runid, "transformer", float(config["attn_coeff"]), p, diff_vocab, eqn_sign,
                    tcfg, transformer_weights(state, tcfg))


def paper_checkpoints(folder: str | Path) -> list[Path]:
    """The released checkpoints in ``folder``, sorted by run id."""
    return sorted(Path(folder).glob("*.safetensors"))
