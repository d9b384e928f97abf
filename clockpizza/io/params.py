"""params.yaml, read and validated before any work starts: the one module the stages import for
their params.

Three modules behind it: :mod:`clockpizza.io.schema` (the sections as pydantic dataclasses),
:mod:`clockpizza.io.params_messages` (a refusal as one line) and
:mod:`clockpizza.io.params_reference` (the README's table; ``python -m clockpizza.io.params``).
Every section of params.yaml is a frozen pydantic dataclass whose fields declare their types and
ranges, with ``extra="forbid"``; the ``allowed`` text of each field is what the error message
says is allowed. :func:`load_params` validates the whole file and turns pydantic's first error
into one :class:`ParamsError` line that names the dotted key, the value and what is allowed. The
``check`` stage (first in ``dvc.yaml``) runs it on every change of params.yaml, before any other
stage removes an output; every stage runs it again before doing anything.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from clockpizza.io.params_messages import parse_params, schema_keys
from clockpizza.io.params_reference import reference_table
from clockpizza.io.schema import (
    ACTIVATIONS,
    BACKENDS,
    DEVICES,
    FVE_SOURCES,
    INT64_MAX,
    MLP_MODELS,
    PRECISIONS,
    PRESET_KEYS,
    PRESET_TARGETS,
    SNAPSHOT_SCHEDULES,
    BoundaryConfig,
    CirclesConfig,
    DataConfig,
    MetricsConfig,
    MLPFamilyConfig,
    ModelConfig,
    NeuronsConfig,
    Params,
    ParamsError,
    PhaseConfig,
    Preset,
    RenderConfig,
    TrainConfig,
)

# What the stages, tools and tests import from here (the schema's names among them).
__all__ = [
    "ACTIVATIONS",
    "BACKENDS",
    "DEVICES",
    "FVE_SOURCES",
    "INT64_MAX",
    "MLP_MODELS",
    "PRECISIONS",
    "PRESET_KEYS",
    "PRESET_TARGETS",
    "SNAPSHOT_SCHEDULES",
    "BoundaryConfig",
    "CirclesConfig",
    "DataConfig",
    "MLPFamilyConfig",
    "MetricsConfig",
    "ModelConfig",
    "NeuronsConfig",
    "Params",
    "ParamsError",
    "PhaseConfig",
    "Preset",
    "RenderConfig",
    "TrainConfig",
    "changed_keys",
    "load_params",
    "parse_params",
    "reference_table",
    "schema_keys",
]


def changed_keys(before: Params, after: Params, keys: tuple[str, ...]) -> list[str]:
    """Which of ``keys`` (top-level keys or sections, as a stage's ``params:`` in dvc.yaml)
    differ between two readings of params.yaml."""
    return [k for k in keys if getattr(before, k) != getattr(after, k)]


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml (safe YAML loader); raise ParamsError naming the key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as e:
        raise ParamsError(f"{path}: not found (run from the repository root)") from e
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from e
    return parse_params(raw)


if __name__ == "__main__":
    print(reference_table(yaml.safe_load(Path("params.yaml").read_text())), end="")
