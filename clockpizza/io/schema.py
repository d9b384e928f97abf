"""The params.yaml schema: one frozen pydantic dataclass per section, every field with its type,
its range and the text an error message gives as what is allowed (``extra="forbid"``: an unknown
key is refused). :mod:`clockpizza.io.params` validates a file against it and
:mod:`clockpizza.io.params_messages` turns pydantic's errors into one line naming the key.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

ACTIVATIONS = ("relu", "gelu")
MLP_MODELS = ("A", "B", "C", "D", "X")  # the attention-free family (docs/specification.md appendix)
PRECISIONS = ("fp32", "tf32", "bf16")
DEVICES = ("auto", "cpu", "cuda")
FVE_SOURCES = ("paper", "centred")  # circles.type_from (clockpizza.analysis.circles)
SNAPSHOT_SCHEDULES = ("log", "none")
BACKENDS = ("local", "ray")  # train.backend: where the grid's chunks train (never in a run id)
# Every integer of params.yaml fits a signed 64-bit integer: torch's seeds, NumPy's arrays and the
# Parquet tables (seed, steps, width columns) store int64.
INT64_MAX = 2**63 - 1


class ParamsError(ValueError):
    """A value in params.yaml that the pipeline refuses; the message names the key."""


_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False)


def _allowed(text: str, **constraints: Any) -> Any:
    """A field whose error message says it must be ``text`` (``{n_heads}`` is filled in)."""
    return Field(json_schema_extra={"allowed": text}, **constraints)


def _refuse(message: str) -> PydanticCustomError:
    return PydanticCustomError("params", message)


# --------------------------------------------------------------------------------------------
# Grid axes: a value or a list, or a list only (DVC matrix axes).


def _scalar_or_list(x: object) -> object:
    if isinstance(x, tuple):  # already validated (dataclasses.replace)
        return x
    if isinstance(x, list):
        if not x:
            raise _refuse("the grid is empty; give a value or a non-empty list")
        return x
    return [x]


def _grid_list(x: object) -> object:
    if isinstance(x, tuple):  # already validated (dataclasses.replace)
        return x
    if not isinstance(x, list):
        raise _refuse(f"must be a list, e.g. [{x}] (a grid axis: every value is trained)")
    if not x:
        raise _refuse("the grid is empty; give at least one value")
    return x


def _top_scalar_or_list(x: object) -> object:
    if isinstance(x, list | tuple) and not x:
        raise _refuse("the grid is empty; give at least one value")
    return _scalar_or_list(x)


def _distinct(values: tuple[Any, ...]) -> tuple[Any, ...]:
    if len(set(values)) != len(values):
        raise _refuse("contains duplicates")
    return values


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))


def _prime(p: int) -> int:
    if not _is_prime(p):
        raise _refuse("must be a prime (the circle analysis uses inverses mod p), e.g. 59")
    return p


def _run_id(x: object) -> object:
    if x is None or (isinstance(x, str) and len(x) == 12
                     and all(c in "0123456789abcdef" for c in x)):
        return x
    raise _refuse("must be null or a run id (12 hex digits, as in the run_id column of "
                  "metrics/runs.parquet)")


def _snapshots(x: object) -> object:
    if isinstance(x, str) and x in SNAPSHOT_SCHEDULES:
        return x
    if (isinstance(x, list | tuple) and x
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in x)):
        return tuple(x)
    raise _refuse("must be log, none, or a list of steps (integers >= 0)")


Rate = Annotated[StrictFloat, _allowed("an attention rate in [0.0, 1.0]", ge=0.0, le=1.0)]
Layers = Annotated[StrictInt, _allowed("an integer from 1 to 4", ge=1, le=4)]
Act = Annotated[Literal["relu", "gelu"], _allowed("one of relu, gelu")]
Flag = Annotated[StrictBool, _allowed("true or false")]
Unit = Annotated[StrictFloat, _allowed("a number in [0.0, 1.0]", ge=0.0, le=1.0)]


def _axis(item: Any, text: str) -> Any:
    """A transformer grid axis trained inside each (width, seed) group: a value or a
    non-empty list of distinct values."""
    return Annotated[tuple[item, ...], BeforeValidator(_scalar_or_list),
                     AfterValidator(_distinct), _allowed(text)]


# --------------------------------------------------------------------------------------------
# The sections of params.yaml.


@dataclass(frozen=True, config=_CONFIG)
class DataConfig:
    p: Annotated[StrictInt, _allowed("an integer >= 3 that is prime", ge=3),
                 AfterValidator(_prime)]
    train_frac: Annotated[StrictFloat, _allowed("a number in (0.0, 1.0)", gt=0.0, lt=1.0)]
    split_seed: Annotated[StrictInt, _allowed("an integer >= 0", ge=0)]
    diff_vocab: _axis(Flag, "true or false (or a list of them)")  # type: ignore[valid-type]
    eqn_sign: _axis(Flag, "true or false (or a list of them)")  # type: ignore[valid-type]
    split_per_run: Flag  # each run its own split, seeded from its run id

    @model_validator(mode="after")
    def _both_splits_non_empty(self) -> DataConfig:
        n_train = round(self.train_frac * self.p * self.p)
        if not 0 < n_train < self.p * self.p:
            raise _refuse(f"data.train_frac = {self.train_frac}: gives {n_train} of "
                          f"{self.p * self.p} pairs for training; both train and test must be "
                          "non-empty")
        return self


@dataclass(frozen=True, config=_CONFIG)
class ModelConfig:
    """The transformers' architecture; ``n_layers`` and ``act`` are grid axes (scalar or list)."""

    n_layers: _axis(Layers, "an integer from 1 to 4")  # type: ignore[valid-type]
    n_heads: Annotated[StrictInt, _allowed("an integer >= 1", ge=1)]
    act: _axis(Act, "one of relu, gelu")  # type: ignore[valid-type]
    init_per_run: Flag  # each run its own initial weights, seeded from its run id


def _models_list(x: object) -> object:
    if not isinstance(x, list | tuple):
        raise _refuse(f"must be a list, e.g. [{x}] or [] for none (a grid axis)")
    return x


def _even(w: int) -> int:
    if w % 2:
        raise _refuse("must be a positive even integer (model D embeds each operand in "
                      "width / 2)")
    return w


@dataclass(frozen=True, config=_CONFIG)
class MLPFamilyConfig:
    """The attention-free models A, B, C, D, X (docs/specification.md appendix); ``models: []``
    trains none."""

    models: Annotated[tuple[Annotated[Literal["A", "B", "C", "D", "X"],
                                      _allowed("one of A, B, C, D, X")], ...],
                      BeforeValidator(_models_list), AfterValidator(_distinct)]
    width: Annotated[StrictInt, _allowed("a positive even integer (model D embeds each "
                                         "operand in width / 2)", ge=2),
                     AfterValidator(_even)]


@dataclass(frozen=True, config=_CONFIG)
class TrainConfig:
    steps: Annotated[StrictInt, _allowed("an integer >= 1", ge=1)]
    lr: Annotated[StrictFloat, _allowed("a number in (0.0, 10.0]", gt=0.0, le=10.0)]
    weight_decay: Annotated[StrictFloat, _allowed("a number in [0.0, 100.0]", ge=0.0, le=100.0)]
    beta1: Annotated[StrictFloat, _allowed("a number in [0.0, 1.0)", ge=0.0, lt=1.0)]
    beta2: Annotated[StrictFloat, _allowed("a number in [0.0, 1.0)", ge=0.0, lt=1.0)]
    eps: Annotated[StrictFloat, _allowed("a number in (0.0, 1.0]", gt=0.0, le=1.0)]
    warmup_steps: Annotated[StrictInt, _allowed("an integer >= 0", ge=0)]
    eval_every: Annotated[StrictInt, _allowed("an integer >= 1", ge=1)]
    precision: Annotated[Literal["fp32", "tf32", "bf16"], _allowed("one of fp32, tf32, bf16")]
    engine: Annotated[Literal["fast", "reference"], _allowed("one of fast, reference")]
    device: Annotated[Literal["auto", "cpu", "cuda"], _allowed("one of auto, cpu, cuda")]
    max_models: Annotated[StrictInt, _allowed("an integer >= 0 (0 = as many as fit in memory)",
                                              ge=0)]
    checkpoint_minutes: Annotated[StrictFloat, _allowed("a number in [0.0, 1000000.0]", ge=0.0,
                                                        le=1e6)]
    # "log", "none" or the steps themselves
    snapshots: Annotated[str | tuple[int, ...], BeforeValidator(_snapshots)]
    # Where the chunks train: none of these enters a run id (the results are the same).
    backend: Annotated[Literal["local", "ray"], _allowed("one of local, ray")]
    ray_address: Annotated[str | None, _allowed("null (RAY_ADDRESS if set, else a local "
                                                "cluster) or a Ray address, e.g. "
                                                "ray://head:10001 or auto")]
    ray_cpus_per_task: Annotated[StrictInt, _allowed("an integer >= 1", ge=1)]
    ray_gpus_per_task: Annotated[StrictFloat | StrictInt,
                                 _allowed("a number in [0.0, 64.0] (0: CPU tasks)", ge=0,
                                          le=64)]
    # CPU arithmetic: subnormal floats flushed to zero (enters the run id when true). Last in
    # the section, with a default, so params files written before it still parse.
    flush_denormals: Flag = False

    @model_validator(mode="after")
    def _cuda_needs_gpus(self) -> TrainConfig:
        if self.backend == "ray" and self.device == "cuda" and not self.ray_gpus_per_task:
            raise _refuse("train.device = cuda with train.backend = ray: the tasks need "
                          "GPUs; set train.ray_gpus_per_task > 0 (e.g. 1, or 0.25 for four "
                          "chunks per GPU)")
        return self

    @model_validator(mode="after")
    def _snapshots_within_steps(self) -> TrainConfig:
        if isinstance(self.snapshots, tuple):
            for i, step in enumerate(self.snapshots):
                if step > self.steps:
                    raise _refuse(f"train.snapshots[{i}] = {step}: beyond train.steps = "
                                  f"{self.steps}; allowed: steps from 0 to train.steps (or log, "
                                  "none)")
        return self

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


@dataclass(frozen=True, config=_CONFIG)
class MetricsConfig:
    gs_triples: Annotated[StrictInt, _allowed("an integer >= 0 (0: all p³ triples)", ge=0)]
    gs_seed: Annotated[StrictInt, _allowed("an integer >= 0", ge=0)]
    n_components: Annotated[StrictInt, _allowed("an integer >= 1", ge=1)]


@dataclass(frozen=True, config=_CONFIG)
class PhaseConfig:
    min_test_acc: Unit
    min_circularity: Unit
    pizza_min_gs: Unit
    pizza_max_di: Unit
    # At or below one half both kinds of circle could hold a "majority" at once.
    circle_majority: Annotated[StrictFloat, _allowed("a number in (0.5, 1.0]", gt=0.5, le=1.0)]


@dataclass(frozen=True, config=_CONFIG)
class CirclesConfig:
    max_circles: Annotated[StrictInt, _allowed("an integer >= 1", ge=1)]
    min_var_share: Annotated[StrictFloat, _allowed("a number in [0.0, 1.0)", ge=0.0, lt=1.0)]
    min_fve: Annotated[StrictFloat, _allowed("a number in [-1.0, 1.0]", ge=-1.0, le=1.0)]
    type_from: Annotated[Literal["paper", "centred"], _allowed("one of paper, centred")]


@dataclass(frozen=True, config=_CONFIG)
class NeuronsConfig:
    """First-layer neurons, their clusters and verdicts (clockpizza.analysis.neurons), and the
    low- against high-α comparison of the report (clockpizza.results.neuron_stats)."""

    min_r2: Unit
    dead_rel_std: Annotated[StrictFloat, _allowed("a number in [0.0, 1.0)", ge=0.0, lt=1.0)]
    min_cluster_neurons: Annotated[StrictInt, _allowed("an integer >= 1", ge=1)]
    disc_min_resultant: Unit
    disc_min_top2: Unit
    torus_max_resultant: Unit
    torus_min_top4: Unit
    low_alpha_max: Rate
    high_alpha_min: Rate
    mmd_bandwidth: Annotated[StrictFloat, _allowed("a number in [0.0, 2.0] (0: the median "
                                                   "heuristic)", ge=0.0, le=2.0)]
    mmd_permutations: Annotated[StrictInt, _allowed("an integer >= 0 (0: no test)", ge=0)]
    mmd_seed: Annotated[StrictInt, _allowed("an integer >= 0", ge=0)]

    @model_validator(mode="after")
    def _ordered(self) -> NeuronsConfig:
        if self.torus_max_resultant >= self.disc_min_resultant:
            raise _refuse(f"neurons.torus_max_resultant = {self.torus_max_resultant}: must be "
                          f"below neurons.disc_min_resultant = {self.disc_min_resultant}")
        if self.low_alpha_max >= self.high_alpha_min:
            raise _refuse(f"neurons.low_alpha_max = {self.low_alpha_max}: must be below "
                          f"neurons.high_alpha_min = {self.high_alpha_min}")
        return self


RunId = Annotated[str | None, BeforeValidator(_run_id)]


@dataclass(frozen=True, config=_CONFIG)
class RenderConfig:
    fig1_width: Annotated[StrictInt, _allowed("a positive integer", ge=1)]
    clock_run_id: RunId
    pizza_run_id: RunId


@dataclass(frozen=True, config=_CONFIG)
class BoundaryConfig:
    """The bootstrap of the fitted phase boundary (clockpizza.results.boundary)."""

    n_boot: Annotated[StrictInt, _allowed("an integer >= 0", ge=0)]
    boot_seed: Annotated[StrictInt, _allowed("an integer >= 0", ge=0)]


@dataclass(frozen=True, config=_CONFIG)
class Preset:
    """One named paper-scale grid of ``presets:``; scripts/preset.sh copies every key."""

    attn_rate: Annotated[tuple[Rate, ...], BeforeValidator(_top_scalar_or_list),
                         _allowed("an attention rate in [0.0, 1.0]")]
    width: Annotated[tuple[Annotated[StrictInt, _allowed("a positive integer", ge=1)], ...],
                     BeforeValidator(_grid_list)]
    seed: Annotated[tuple[Annotated[StrictInt, _allowed("an integer >= 0", ge=0)], ...],
                    BeforeValidator(_grid_list)]
    steps: Annotated[StrictInt, _allowed("an integer >= 1", ge=1)]
    n_layers: _axis(Layers, "an integer from 1 to 4")  # type: ignore[valid-type]
    init_per_run: Flag  # the paper's protocol: each run its own initial weights ...
    split_per_run: Flag  # ... and its own train/test split


Width = Annotated[StrictInt, _allowed("a positive multiple of model.n_heads = {n_heads}", ge=1)]
Seed = Annotated[StrictInt, _allowed("an integer >= 0", ge=0)]


@dataclass(frozen=True, config=_CONFIG)
class Params:
    """The whole of params.yaml, validated."""

    attn_rate: Annotated[tuple[Rate, ...], BeforeValidator(_top_scalar_or_list),
                         AfterValidator(_distinct)]
    width: Annotated[tuple[Width, ...], BeforeValidator(_grid_list), AfterValidator(_distinct)]
    seed: Annotated[tuple[Seed, ...], BeforeValidator(_grid_list), AfterValidator(_distinct)]
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    metrics: MetricsConfig
    phase: PhaseConfig
    render: RenderConfig
    boundary: BoundaryConfig
    mlp_family: MLPFamilyConfig
    circles: CirclesConfig
    neurons: NeuronsConfig
    presets: dict[str, Preset] = dataclasses.field(default_factory=dict)

    @model_validator(mode="after")
    def _widths_fit_the_heads(self) -> Params:
        for i, w in enumerate(self.width):
            if w % self.model.n_heads:
                raise _refuse(f"width[{i}] = {w}: must be a positive multiple of "
                              f"model.n_heads = {self.model.n_heads}")
        return self

    @model_validator(mode="after")
    def _triples_within_p_cubed(self) -> Params:
        n, p = self.metrics.gs_triples, self.data.p
        if n > p**3:
            raise _refuse(f"metrics.gs_triples = {n}: more than the p³ = {p**3} triples of "
                          f"data.p = {p}; allowed: an integer from 0 (all of them) to {p**3}")
        return self


# What scripts/preset.sh copies, and where: preset key -> params key. Every preset gives every key.
PRESET_TARGETS = {"attn_rate": "attn_rate", "width": "width", "seed": "seed",
                  "steps": "train.steps", "n_layers": "model.n_layers",
                  "init_per_run": "model.init_per_run", "split_per_run": "data.split_per_run"}
PRESET_KEYS = tuple(PRESET_TARGETS)
