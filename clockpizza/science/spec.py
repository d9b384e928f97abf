"""One training run, defined: every setting that determines a trained model (:class:`RunSpec`),
its id (a hash of those settings), and the expansion of params.yaml's grid into runs and into
the batches that train together.

The batching words, one per level: a *group* is the runs of one (width, seed) (a directory under
runs/); a *shape group* the runs of a group that share every setting but the attention rate
(one batched model); a *chunk* the part of a shape group that fits in memory at once
(:mod:`clockpizza.science.chunks`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import asdict
from typing import Any

# pydantic's dataclass, as in the params schema: a value given as 0 is stored as the float 0.0,
# so the JSON behind a run id never depends on how a caller wrote a number.
from pydantic.dataclasses import dataclass

from clockpizza.io.params import MLP_MODELS, Params

TRANSFORMER = "transformer"  # RunSpec.family of the transformers; the MLP family uses its letter
# RunSpec.engine of the autograd step (and of every run trained before "fast" existed)
REFERENCE = "reference"


# Fields added after the first results were produced. They are left out of the hash while they
# hold these values, so a run that does not use them keeps the id it always had (every run of the
# default grid does not).
_HASHED_ONLY_IF_SET: dict[str, object] = {"diff_vocab": False, "eqn_sign": False,
                                          "family": TRANSFORMER, "init_per_run": False,
                                          "split_per_run": False, "engine": REFERENCE,
                                          "flush_denormals": False}


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one trained model (and nothing that does not, e.g. device).

    ``family`` is ``"transformer"`` or one of the attention-free models ``A``..``X``; those have
    ``attn_rate = None`` (missing: there is no attention), ``d_model`` = their width h and
    ``n_layers = n_heads = 0`` (no transformer blocks, no heads).
    """

    attn_rate: float | None
    d_model: int
    n_layers: int
    n_heads: int
    act: str
    p: int
    train_frac: float
    split_seed: int
    init_seed: int
    steps: int
    lr: float
    weight_decay: float
    beta1: float
    beta2: float
    eps: float
    warmup_steps: int
    precision: str
    diff_vocab: bool = False
    eqn_sign: bool = False
    family: str = TRANSFORMER
    init_per_run: bool = False  # initial weights from the run's own id, not init_seed alone
    split_per_run: bool = False  # train/test split from the run's own id, not split_seed
    # How the training step is computed: "reference" (autograd, op by op: every run before the
    # fast step existed) or "fast" (clockpizza.science.fast: the same mathematics, equal to
    # rounding, not bit for bit; so it is part of what defines a run, and of its id)
    engine: str = REFERENCE
    # CPU arithmetic with subnormal floats flushed to zero (train.flush_denormals): late in
    # training the softmax's tiny probabilities and their gradients are subnormal, which some
    # CPUs compute far slower. The results change in their last bits (a few runs end elsewhere,
    # as on another CPU), so it is part of what defines a run; no effect on a GPU's kernels.
    flush_denormals: bool = False

    @property
    def weights_seed(self) -> int:
        """The seed the initial weights are drawn from.

        ``init_seed`` itself by default, so every attention rate of a group starts from the
        same weights; with ``init_per_run`` one derived from the run id (the fp32 twin's for
        another precision), so each run starts from its own (as each of the paper's runs did).
        """
        return _derived_seed(self._seed_basis, "init") if self.init_per_run else self.init_seed

    @property
    def data_split_seed(self) -> int:
        """The seed of the run's train/test split: ``split_seed``, or with ``split_per_run``
        one derived from the run id (the paper drew an unseeded split per run); the fp32
        twin's for another precision."""
        return _derived_seed(self._seed_basis, "split") if self.split_per_run else self.split_seed

    @property
    def _seed_basis(self) -> str:
        """What the per-run seeds derive from: the run id of this run in fp32. A TF32 or bf16
        run so starts from its fp32 twin's weights and split, and a precision is compared
        with fp32 on the same models (fp32 runs: their own id, as always)."""
        if self.precision == "fp32":
            return self.run_id
        return dataclasses.replace(self, precision="fp32").run_id

    @property
    def run_id(self) -> str:
        """A hash of the defining settings: the same config always gets the same id."""
        d = asdict(self)
        for key, default in _HASHED_ONLY_IF_SET.items():
            if d[key] == default:
                del d[key]
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def group_key(self) -> tuple[object, ...]:
        """Runs that differ only in attention rate share a shape and train as one batch."""
        d = asdict(self)
        d.pop("attn_rate")
        return tuple(sorted(d.items()))

    @property
    def group(self) -> str:
        """The directory under runs/ of the group that trains this run."""
        if self.family == TRANSFORMER:
            return group_name(self.d_model, self.init_seed)
        return mlp_group_name(self.family, self.init_seed)


def fast_step_applies(n_layers: int, precision: str) -> bool:
    """Where ``train.engine: fast`` has a fast step: one-layer transformers in fp32 or tf32
    (the one rule; :func:`clockpizza.science.fast.supports` applies it to a model). Other runs
    train with the reference step, and record ``engine: reference``."""
    return n_layers == 1 and precision in ("fp32", "tf32")


def engine_note(params: Params) -> str | None:
    """One line saying which transformer runs ``train.engine: fast`` trains with the reference
    step instead (recorded as ``engine: reference`` in their config and id); ``None`` if none."""
    if params.train.engine == REFERENCE:
        return None
    other = [n for n in params.model.n_layers
             if not fast_step_applies(n, params.train.precision)]
    if not other:
        return None
    layers = ", ".join(str(n) for n in other)
    return (f"train.engine = fast has no fast step for n_layers {layers} in "
            f"{params.train.precision} (one-layer fp32/tf32 only): those runs train with the "
            "reference step and record engine: reference")


def _derived_seed(run_id: str, purpose: str) -> int:
    return int(hashlib.sha256(f"{run_id}:{purpose}".encode()).hexdigest()[:15], 16)


def group_name(width: int, seed: int) -> str:
    """Directory of one (width, seed) group under runs/."""
    return f"w{width}-s{seed}"


def mlp_group_name(model: str, seed: int) -> str:
    """Directory of one attention-free model (one group of the train stage)."""
    return f"mlp-{model}-s{seed}"


def _training(params: Params) -> dict[str, Any]:
    t, d = params.train, params.data
    return {"p": d.p, "train_frac": d.train_frac, "split_seed": d.split_seed, "steps": t.steps,
            "lr": t.lr, "weight_decay": t.weight_decay, "beta1": t.beta1, "beta2": t.beta2,
            "eps": t.eps, "warmup_steps": t.warmup_steps, "precision": t.precision,
            "init_per_run": params.model.init_per_run, "split_per_run": d.split_per_run,
            "flush_denormals": t.flush_denormals}


def group_specs(params: Params, width: int, seed: int) -> list[RunSpec]:
    """The transformer runs of one (width, seed) group, in params order.

    Every combination of the transformer axes (n_layers × act × diff_vocab × eqn_sign) times
    every attention rate; :func:`shape_groups` splits them into batches of one shape.
    """
    m, d = params.model, params.data
    return [
        RunSpec(attn_rate=a, d_model=width, n_layers=n_layers, n_heads=m.n_heads, act=act,
                init_seed=seed, diff_vocab=diff_vocab, eqn_sign=eqn_sign, **_training(params),
                engine=(params.train.engine
                        if fast_step_applies(n_layers, params.train.precision) else REFERENCE))
        for n_layers, act, diff_vocab, eqn_sign in itertools.product(
            m.n_layers, m.act, d.diff_vocab, d.eqn_sign)
        for a in params.attn_rate
    ]


def mlp_spec(params: Params, model: str, seed: int) -> RunSpec:
    """The run of attention-free model ``model`` (A..X) from init seed ``seed``."""
    if model not in MLP_MODELS:
        raise ValueError(f"model {model!r}: must be one of {', '.join(MLP_MODELS)}")
    return RunSpec(attn_rate=None, d_model=params.mlp_family.width, n_layers=0, n_heads=0,
                   act="relu", init_seed=seed, family=model,
                   # one model per seed already; the shared split keeps the family comparable
                   **(_training(params) | {"init_per_run": False, "split_per_run": False}))


def grid_groups(params: Params) -> list[tuple[str, list[RunSpec]]]:
    """Every run of the grid in params, by group (its directory under runs/), in params order:
    the (width, seed) transformer groups, then the attention-free models."""
    out = [(group_name(w, s), group_specs(params, w, s)) for w in params.width
           for s in params.seed]
    return out + [(mlp_group_name(m, s), [mlp_spec(params, m, s)])
                  for m in params.mlp_family.models for s in params.seed]


def shape_groups(specs: list[RunSpec]) -> list[list[RunSpec]]:
    """Split runs into batches that share everything but the attention rate (first-seen order)."""
    groups: dict[tuple[object, ...], list[RunSpec]] = {}
    for spec in specs:
        groups.setdefault(spec.group_key, []).append(spec)
    return list(groups.values())
