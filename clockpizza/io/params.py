"""The params.yaml schema: frozen dataclasses, validated before any work starts.

Every stage calls :func:`load_params` on the whole file, so a typo or an out-of-range value is
refused by whichever stage DVC runs first, with a message that names the key and what is allowed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

ACTIVATIONS = ("relu", "gelu")
MLP_MODELS = ("A", "B", "C", "D", "X")  # the attention-free family (SPEC.md appendix)
TRANSFORMER = "transformer"  # RunSpec.family of the transformers; the MLP family uses its letter
PRECISIONS = ("fp32", "tf32", "bf16")
DEVICES = ("auto", "cpu", "cuda")
FVE_SOURCES = ("paper", "centred")  # circles.type_from (clockpizza.analysis.circles)


class ParamsError(ValueError):
    """A value in params.yaml that the pipeline refuses; the message names the key."""


# --------------------------------------------------------------------------------------------
# Small validators. Each takes the dotted key so the message can name it.


def _is_int(x: object) -> bool:
    # YAML `true` is a Python bool, and bool is an int subclass: refuse it as a number.
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: object) -> bool:
    return (_is_int(x) or isinstance(x, float)) and math.isfinite(float(x))  # type: ignore[arg-type]


def _int(key: str, x: object, *, lo: int | None = None, hi: int | None = None,
         allowed: str = "an integer") -> int:
    if (not _is_int(x) or (lo is not None and x < lo)  # type: ignore[operator]
            or (hi is not None and x > hi)):  # type: ignore[operator]
        raise ParamsError(f"{key} = {x!r}: must be {allowed}")
    return int(x)  # type: ignore[arg-type]


def _float(key: str, x: object, *, lo: float, hi: float, open_lo: bool = False,
           open_hi: bool = False, allowed: str | None = None) -> float:
    ok = _is_number(x)
    if ok:
        v = float(x)  # type: ignore[arg-type]
        ok = (v > lo if open_lo else v >= lo) and (v < hi if open_hi else v <= hi)
    if not ok:
        lb, rb = ("(" if open_lo else "["), (")" if open_hi else "]")
        raise ParamsError(f"{key} = {x!r}: must be {allowed or 'a number in'} {lb}{lo}, {hi}{rb}")
    return float(x)  # type: ignore[arg-type]


def _choice(key: str, x: object, choices: tuple[str, ...]) -> str:
    if x not in choices:
        raise ParamsError(f"{key} = {x!r}: must be one of {', '.join(choices)}")
    return str(x)


def _as_list(key: str, x: object, *, scalar_ok: bool) -> list[Any]:
    if isinstance(x, list):
        if not x:
            raise ParamsError(f"{key} = []: the grid is empty; give at least one value")
        return x
    if scalar_ok and x is not None:
        return [x]
    raise ParamsError(
        f"{key} = {x!r}: must be a list, e.g. [{x}] (it is a DVC matrix axis, and DVC "
        "cannot iterate over a scalar)"
    )


def _bool(key: str, x: object) -> bool:
    # Only YAML true/false: 0, 1, "yes" or "true" (a string) are refused, not guessed at.
    if not isinstance(x, bool):
        raise ParamsError(f"{key} = {x!r}: must be true or false")
    return x


def _axis(key: str, x: object, parse: Callable[[str, object], Any]) -> tuple[Any, ...]:
    """A transformer grid axis trained inside each train@<width>-<seed> instance.

    A scalar is one value; a list is every value (each element checked by ``parse``, which gets
    the element's own key, e.g. ``model.n_layers[1]``). Empty lists and duplicates are refused.
    """
    if not isinstance(x, list):
        return (parse(key, x),)
    if not x:
        raise ParamsError(f"{key} = []: the grid is empty; give a value or a non-empty list")
    values = tuple(parse(f"{key}[{i}]", v) for i, v in enumerate(x))
    if len(set(values)) != len(values):
        raise ParamsError(f"{key} = {x!r}: contains duplicates")
    return values


def _section(raw: Mapping[str, Any], name: str, cls: type) -> dict[str, Any]:
    sec = raw.get(name)
    if not isinstance(sec, Mapping):
        raise ParamsError(f"{name}: missing or not a mapping; expected keys: "
                          + ", ".join(f.name for f in fields(cls)))
    allowed = [f.name for f in fields(cls)]
    unknown = sorted(set(sec) - set(allowed), key=str)
    if unknown:
        raise ParamsError(f"{name}.{unknown[0]}: unknown key; allowed keys in {name}: "
                          + ", ".join(allowed))
    missing = [k for k in allowed if k not in sec]
    if missing:
        raise ParamsError(f"{name}.{missing[0]}: missing; allowed keys in {name}: "
                          + ", ".join(allowed))
    return dict(sec)


# --------------------------------------------------------------------------------------------
# The sections of params.yaml.


@dataclass(frozen=True)
class DataConfig:
    p: int
    train_frac: float
    split_seed: int
    diff_vocab: tuple[bool, ...]  # grid axis of the transformers (appendix ablation)
    eqn_sign: tuple[bool, ...]  # grid axis of the transformers (appendix ablation)
    split_per_run: bool  # each run its own split, seeded from its run id

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> DataConfig:
        s = _section(raw, "data", cls)
        p = _int("data.p", s["p"], lo=3, allowed="an integer >= 3")
        frac = _float("data.train_frac", s["train_frac"], lo=0.0, hi=1.0, open_lo=True,
                      open_hi=True)
        n_train = round(frac * p * p)
        if not 0 < n_train < p * p:
            raise ParamsError(f"data.train_frac = {frac}: gives {n_train} of {p * p} pairs for "
                              "training; both train and test must be non-empty")
        return cls(p, frac, _int("data.split_seed", s["split_seed"], lo=0,
                                 allowed="an integer >= 0"),
                   _axis("data.diff_vocab", s["diff_vocab"], _bool),
                   _axis("data.eqn_sign", s["eqn_sign"], _bool),
                   _bool("data.split_per_run", s["split_per_run"]))


@dataclass(frozen=True)
class ModelConfig:
    """The transformers' architecture; ``n_layers`` and ``act`` are grid axes (scalar or list)."""

    n_layers: tuple[int, ...]
    n_heads: int
    act: tuple[str, ...]
    init_per_run: bool  # each run its own initial weights, seeded from its run id

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> ModelConfig:
        s = _section(raw, "model", cls)
        return cls(
            _axis("model.n_layers", s["n_layers"], _n_layers),
            _int("model.n_heads", s["n_heads"], lo=1, allowed="an integer >= 1"),
            _axis("model.act", s["act"], lambda k, x: _choice(k, x, ACTIVATIONS)),
            _bool("model.init_per_run", s["init_per_run"]),
        )


def _n_layers(key: str, x: object) -> int:
    return _int(key, x, lo=1, hi=4, allowed="an integer from 1 to 4")


@dataclass(frozen=True)
class MLPFamilyConfig:
    """The attention-free models A, B, C, D, X (SPEC.md appendix); ``models: []`` trains none."""

    models: tuple[str, ...]
    width: int

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> MLPFamilyConfig:
        s = _section(raw, "mlp_family", cls)
        models = s["models"]
        if not isinstance(models, list):
            raise ParamsError(
                f"mlp_family.models = {models!r}: must be a list, e.g. [{models}] or [] for none "
                "(it is a DVC matrix axis, and DVC cannot iterate over a scalar)")
        for i, m in enumerate(models):
            if m not in MLP_MODELS:
                raise ParamsError(f"mlp_family.models[{i}] = {m!r}: must be one of "
                                  + ", ".join(MLP_MODELS))
        if len(set(models)) != len(models):
            raise ParamsError(f"mlp_family.models = {models!r}: contains duplicates")
        width = s["width"]
        if not _is_int(width) or width < 2 or width % 2:
            raise ParamsError(f"mlp_family.width = {width!r}: must be a positive even integer "
                              "(model D embeds each operand in width / 2)")
        return cls(tuple(models), int(width))


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    lr: float
    weight_decay: float
    beta1: float
    beta2: float
    eps: float
    warmup_steps: int
    eval_every: int
    precision: str
    device: str
    max_models: int
    checkpoint_minutes: float
    snapshots: str | tuple[int, ...] = "log"  # "log", "none" or the steps themselves

    @property
    def snapshot_steps(self) -> tuple[int, ...]:
        """The steps whose weights every run keeps (``train.snapshots``), each <= ``steps``:
        "log" is 0, 100, 200, 300, 500, 1000, 2000, 3000, 5000, ... below ``steps``, and
        ``steps``; "none" keeps none (the final weights are always kept)."""
        if self.snapshots == "none":
            return ()
        if self.snapshots == "log":
            series = [m * 10**k for k in range(2, 12) for m in (1, 2, 3, 5)]
            return (0, *[x for x in series if x < self.steps], self.steps)
        return tuple(sorted({s for s in self.snapshots if s <= self.steps}))

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> TrainConfig:
        s = _section(raw, "train", cls)
        return cls(
            steps=_int("train.steps", s["steps"], lo=1, allowed="an integer >= 1"),
            lr=_float("train.lr", s["lr"], lo=0.0, hi=10.0, open_lo=True),
            weight_decay=_float("train.weight_decay", s["weight_decay"], lo=0.0, hi=100.0),
            beta1=_float("train.beta1", s["beta1"], lo=0.0, hi=1.0, open_hi=True),
            beta2=_float("train.beta2", s["beta2"], lo=0.0, hi=1.0, open_hi=True),
            eps=_float("train.eps", s["eps"], lo=0.0, hi=1.0, open_lo=True),
            warmup_steps=_int("train.warmup_steps", s["warmup_steps"], lo=0,
                              allowed="an integer >= 0"),
            eval_every=_int("train.eval_every", s["eval_every"], lo=1,
                            allowed="an integer >= 1"),
            precision=_choice("train.precision", s["precision"], PRECISIONS),
            device=_choice("train.device", s["device"], DEVICES),
            max_models=_int("train.max_models", s["max_models"], lo=0,
                            allowed="an integer >= 0 (0 = as many as fit in memory)"),
            checkpoint_minutes=_float("train.checkpoint_minutes", s["checkpoint_minutes"],
                                      lo=0.0, hi=1e6),
            snapshots=_snapshots(s["snapshots"]),
        )


def _snapshots(x: Any) -> str | tuple[int, ...]:
    allowed = "log, none, or a list of steps (integers >= 0)"
    if isinstance(x, str) and x in ("log", "none"):
        return x
    if isinstance(x, list) and x and all(isinstance(v, int) and not isinstance(v, bool)
                                         and v >= 0 for v in x):
        return tuple(x)
    raise ParamsError(f"train.snapshots = {x!r}: must be {allowed}")


@dataclass(frozen=True)
class MetricsConfig:
    gs_triples: int
    gs_seed: int
    n_components: int

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> MetricsConfig:
        s = _section(raw, "metrics", cls)
        return cls(
            _int("metrics.gs_triples", s["gs_triples"], lo=0,
                 allowed="an integer >= 0 (0: all p³ triples)"),
            _int("metrics.gs_seed", s["gs_seed"], lo=0, allowed="an integer >= 0"),
            _int("metrics.n_components", s["n_components"], lo=1, allowed="an integer >= 1"),
        )


@dataclass(frozen=True)
class PhaseConfig:
    min_test_acc: float
    min_circularity: float
    pizza_min_gs: float
    pizza_max_di: float
    circle_majority: float

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> PhaseConfig:
        s = _section(raw, "phase", cls)
        out = {k: _float(f"phase.{k}", s[k], lo=0.0, hi=1.0) for k in s
               if k != "circle_majority"}
        # At or below one half both kinds of circle could hold a "majority" at once.
        out["circle_majority"] = _float("phase.circle_majority", s["circle_majority"], lo=0.5,
                                        hi=1.0, open_lo=True)
        return cls(**out)


@dataclass(frozen=True)
class CirclesConfig:
    max_circles: int
    min_var_share: float
    min_fve: float
    type_from: str

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> CirclesConfig:
        s = _section(raw, "circles", cls)
        return cls(
            _int("circles.max_circles", s["max_circles"], lo=1, allowed="an integer >= 1"),
            _float("circles.min_var_share", s["min_var_share"], lo=0.0, hi=1.0, open_hi=True),
            _float("circles.min_fve", s["min_fve"], lo=-1.0, hi=1.0),
            _choice("circles.type_from", s["type_from"], FVE_SOURCES),
        )


def _run_id(key: str, x: object) -> str | None:
    if x is None:
        return None
    if not (isinstance(x, str) and len(x) == 12 and all(c in "0123456789abcdef" for c in x)):
        raise ParamsError(f"{key} = {x!r}: must be null or a run id (12 hex digits, as in "
                          "the run_id column of metrics/runs.parquet)")
    return x


@dataclass(frozen=True)
class RenderConfig:
    fig1_width: int
    clock_run_id: str | None
    pizza_run_id: str | None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> RenderConfig:
        s = _section(raw, "render", cls)
        return cls(_int("render.fig1_width", s["fig1_width"], lo=1,
                        allowed="a positive integer"),
                   _run_id("render.clock_run_id", s["clock_run_id"]),
                   _run_id("render.pizza_run_id", s["pizza_run_id"]))


@dataclass(frozen=True)
class BoundaryConfig:
    """The bootstrap of the fitted phase boundary (clockpizza.results.boundary)."""

    n_boot: int
    boot_seed: int

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> BoundaryConfig:
        s = _section(raw, "boundary", cls)
        return cls(
            _int("boundary.n_boot", s["n_boot"], lo=0, allowed="an integer >= 0"),
            _int("boundary.boot_seed", s["boot_seed"], lo=0, allowed="an integer >= 0"),
        )


@dataclass(frozen=True)
class Params:
    """The whole of params.yaml, validated."""

    attn_rate: tuple[float, ...]
    width: tuple[int, ...]
    seed: tuple[int, ...]
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    metrics: MetricsConfig
    phase: PhaseConfig
    render: RenderConfig
    boundary: BoundaryConfig
    mlp_family: MLPFamilyConfig
    circles: CirclesConfig

    @classmethod
    def parse(cls, raw: object) -> Params:
        if not isinstance(raw, Mapping):
            raise ParamsError("params.yaml: top level must be a mapping of keys to values")
        _check_presets(raw.get("presets", {}))
        raw = {k: v for k, v in raw.items() if k != "presets"}
        allowed = [f.name for f in fields(cls)] + ["presets"]
        unknown = sorted(set(raw) - set(allowed), key=str)
        if unknown:
            raise ParamsError(f"{unknown[0]}: unknown top-level key; allowed: "
                              + ", ".join(allowed))
        for k in ("attn_rate", "width", "seed"):
            if k not in raw:
                raise ParamsError(f"{k}: missing (a grid axis)")
        model = ModelConfig.parse(raw)
        rates = tuple(
            _float(f"attn_rate[{i}]", a, lo=0.0, hi=1.0, allowed="an attention rate in")
            for i, a in enumerate(_as_list("attn_rate", raw["attn_rate"], scalar_ok=True))
        )
        widths = tuple(
            _int(f"width[{i}]", w, lo=1,
                 allowed=f"a positive multiple of model.n_heads = {model.n_heads}")
            for i, w in enumerate(_as_list("width", raw["width"], scalar_ok=False))
        )
        for i, w in enumerate(widths):
            if w % model.n_heads:
                raise ParamsError(f"width[{i}] = {w}: must be a positive multiple of "
                                  f"model.n_heads = {model.n_heads}")
        seeds = tuple(
            _int(f"seed[{i}]", s, lo=0, allowed="an integer >= 0")
            for i, s in enumerate(_as_list("seed", raw["seed"], scalar_ok=False))
        )
        for key, vals in (("attn_rate", rates), ("width", widths), ("seed", seeds)):
            if len(set(vals)) != len(vals):
                raise ParamsError(f"{key} = {list(vals)}: contains duplicates")
        params = cls(rates, widths, seeds, DataConfig.parse(raw), model, TrainConfig.parse(raw),
                     MetricsConfig.parse(raw), PhaseConfig.parse(raw), RenderConfig.parse(raw),
                     BoundaryConfig.parse(raw),
                     MLPFamilyConfig.parse(raw), CirclesConfig.parse(raw))
        return params


# What scripts/preset.sh copies, and where: preset key -> params key. Every preset gives every key.
PRESET_TARGETS = {"attn_rate": "attn_rate", "width": "width", "seed": "seed",
                  "steps": "train.steps", "n_layers": "model.n_layers"}
PRESET_KEYS = tuple(PRESET_TARGETS)


def _check_presets(presets: object) -> None:
    """Check the shape and ranges of each preset now, so a typo surfaces before it is used.

    Checks that depend on other sections (a width that is a multiple of n_heads) are made when
    the preset is applied, like any grid.
    """
    if not isinstance(presets, Mapping):
        raise ParamsError("presets: must be a mapping of preset names to grids")
    for name, preset in presets.items():
        if not isinstance(preset, Mapping):
            raise ParamsError(f"presets.{name}: must be a mapping with keys "
                              + ", ".join(PRESET_KEYS))
        unknown = sorted(set(preset) - set(PRESET_KEYS), key=str)
        if unknown:
            raise ParamsError(f"presets.{name}.{unknown[0]}: unknown key; allowed: "
                              + ", ".join(PRESET_KEYS))
        missing = [k for k in PRESET_KEYS if k not in preset]
        if missing:
            raise ParamsError(f"presets.{name}.{missing[0]}: missing; scripts/preset.sh copies "
                              "every one of " + ", ".join(PRESET_KEYS))
        key = f"presets.{name}"
        _axis(f"{key}.n_layers", preset["n_layers"], _n_layers)
        for i, a in enumerate(_as_list(f"{key}.attn_rate", preset.get("attn_rate", [0.0]),
                                       scalar_ok=True)):
            _float(f"{key}.attn_rate[{i}]", a, lo=0.0, hi=1.0, allowed="an attention rate in")
        for axis in ("width", "seed"):
            for i, v in enumerate(_as_list(f"{key}.{axis}", preset.get(axis, [1]),
                                           scalar_ok=False)):
                _int(f"{key}.{axis}[{i}]", v, lo=0 if axis == "seed" else 1,
                     allowed="an integer >= 0" if axis == "seed" else "a positive integer")
        _int(f"{key}.steps", preset.get("steps", 1), lo=1, allowed="an integer >= 1")


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml (safe YAML loader); raise ParamsError naming the key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as e:
        raise ParamsError(f"{path}: not found (run from the repository root)") from e
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from e
    return Params.parse(raw)


# --------------------------------------------------------------------------------------------
# One training run: every setting that defines it, and its id.


# Fields added after the first results were produced. They are left out of the hash while they
# hold these values, so a run that does not use them keeps the id it always had (every run of the
# default grid does not).
_HASHED_ONLY_IF_SET: dict[str, object] = {"diff_vocab": False, "eqn_sign": False,
                                          "family": TRANSFORMER, "init_per_run": False,
                                          "split_per_run": False}


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

    @property
    def weights_seed(self) -> int:
        """The seed the initial weights are drawn from.

        ``init_seed`` itself by default, so every attention rate of a group starts from the
        same weights; with ``init_per_run`` one derived from the run id, so each run starts
        from its own (as each of the paper's runs did).
        """
        return _derived_seed(self.run_id, "init") if self.init_per_run else self.init_seed

    @property
    def data_split_seed(self) -> int:
        """The seed of the run's train/test split: ``split_seed``, or with ``split_per_run``
        one derived from the run id (the paper drew an unseeded split per run)."""
        return _derived_seed(self.run_id, "split") if self.split_per_run else self.split_seed

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
        """The directory under runs/ (and DVC stage instance) that trains this run."""
        if self.family == TRANSFORMER:
            return group_name(self.d_model, self.init_seed)
        return mlp_group_name(self.family, self.init_seed)


def _derived_seed(run_id: str, purpose: str) -> int:
    return int(hashlib.sha256(f"{run_id}:{purpose}".encode()).hexdigest()[:15], 16)


def group_name(width: int, seed: int) -> str:
    """Directory (and DVC matrix instance) of one (width, seed) group under runs/."""
    return f"w{width}-s{seed}"


def mlp_group_name(model: str, seed: int) -> str:
    """Directory of one attention-free model (stage instance train_mlp@<model>-<seed>)."""
    return f"mlp-{model}-s{seed}"


def _training(params: Params) -> dict[str, Any]:
    t, d = params.train, params.data
    return {"p": d.p, "train_frac": d.train_frac, "split_seed": d.split_seed, "steps": t.steps,
            "lr": t.lr, "weight_decay": t.weight_decay, "beta1": t.beta1, "beta2": t.beta2,
            "eps": t.eps, "warmup_steps": t.warmup_steps, "precision": t.precision,
            "init_per_run": params.model.init_per_run, "split_per_run": d.split_per_run}


def group_specs(params: Params, width: int, seed: int) -> list[RunSpec]:
    """The transformer runs of one (width, seed) instance, in params order.

    Every combination of the transformer axes (n_layers × act × diff_vocab × eqn_sign) times
    every attention rate; :func:`shape_groups` splits them into batches of one shape.
    """
    m, d = params.model, params.data
    return [
        RunSpec(attn_rate=a, d_model=width, n_layers=n_layers, n_heads=m.n_heads, act=act,
                init_seed=seed, diff_vocab=diff_vocab, eqn_sign=eqn_sign, **_training(params))
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


def instance_specs(params: Params) -> list[tuple[str, list[RunSpec]]]:
    """Every run of the grid in params, by training instance (group directory), in params order:
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
