"""What a refused params.yaml is told: pydantic's first error, and the faults pydantic would
misname (a key that is not a string, a misspelt key, an integer beyond int64), as one line that
names the dotted key, the value and what is allowed, with a hint where a likely slip is seen."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Any, get_type_hints

from pydantic import (
    TypeAdapter,
    ValidationError,
)

from clockpizza.io.schema import INT64_MAX, Params, ParamsError, Preset


def _refuse_non_string_keys(raw: Mapping[Any, Any]) -> None:
    # YAML reads a key like `1:` as a number; pydantic would only say keys must be strings.
    for k, v in raw.items():
        if not isinstance(k, str):
            raise ParamsError(f"{k!r}: unknown top-level key; allowed: "
                              + ", ".join(_keys_of(None)))
        if isinstance(v, Mapping) and _section_class(k) is not None:
            for kk in v:
                if not isinstance(kk, str):
                    raise ParamsError(f"{k}.{kk!r}: unknown key; allowed keys in {k}: "
                                      + ", ".join(_keys_of(k)))


def _refuse_misspelt_keys(raw: Mapping[str, Any]) -> None:
    # Named before pydantic reports the right key as "missing": the typo is the fault.
    sections: list[tuple[str | None, Mapping[str, Any]]] = [(None, raw)]
    sections += [(k, v) for k, v in raw.items()
                 if isinstance(v, Mapping) and _section_class(k) is not None]
    for section, node in sections:
        allowed = _keys_of(section)
        for key in node:
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.75)
            if key in allowed or not close:
                continue
            if section is None:
                raise ParamsError(f"{key}: unknown top-level key; did you mean {close[0]}? "
                                  "allowed: " + ", ".join(allowed))
            raise ParamsError(f"{section}.{key}: unknown key; did you mean {section}.{close[0]}? "
                              f"allowed keys in {section}: " + ", ".join(allowed))


def _refuse_beyond_int64(node: object, key: str) -> None:
    if isinstance(node, Mapping):
        for k, v in node.items():
            _refuse_beyond_int64(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _refuse_beyond_int64(v, f"{key}[{i}]")
    elif isinstance(node, int) and not isinstance(node, bool) and not (
            -INT64_MAX - 1 <= node <= INT64_MAX):
        raise ParamsError(f"{key} = {node}: beyond the signed 64-bit range that torch's seeds "
                          f"and the Parquet tables hold; allowed: at most {INT64_MAX}")


_ADAPTER = TypeAdapter(Params)
# The sections of params.yaml (data, model, ...): the fields of Params that are dataclasses.
_SECTIONS: dict[str, type] = {name: hint for name, hint in get_type_hints(Params).items()
                              if is_dataclass(hint)}


def schema_keys() -> list[str]:
    """Every key of params.yaml the schema declares, dotted (``train.steps``), in order; the
    presets are named by their section (``presets``). The README's reference is checked
    against it (tests/test_config.py)."""
    out = []
    for f in fields(Params):
        cls = _section_class(f.name)
        if cls is None or f.name == "presets":
            out.append(f.name)
        else:
            out += [f"{f.name}.{g.name}" for g in fields(cls)]
    return out


def _section_class(name: str) -> type | None:
    return _SECTIONS.get(name)


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith(
                ("function-", "tuple[", "union[", "literal[")):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _field_path(loc: tuple[Any, ...]) -> list[str]:
    return [str(p) for p in loc if isinstance(p, str) and not p.startswith(
        ("function-", "tuple[", "union[", "literal["))]


def _allowed_text(loc: tuple[Any, ...], raw: Mapping[str, Any]) -> str | None:
    """The ``allowed`` text declared for the field at ``loc`` (sections, presets walked)."""
    path = _field_path(loc)
    cls: Any = Params
    info = None
    i = 0
    while i < len(path):
        name = path[i]
        if cls is Params and name == "presets":
            cls, i = Preset, i + 2  # presets.<name>.<key>
            continue
        field_infos = getattr(cls, "__pydantic_fields__", {})
        if name not in field_infos:
            return None
        info = field_infos[name]
        nxt = _section_class(name) if cls is Params else None
        if nxt is None:
            break
        cls, i = nxt, i + 1
    if info is None:
        return None
    own = [m.json_schema_extra.get("allowed") for m in [info, *info.metadata]
           if isinstance(getattr(m, "json_schema_extra", None), dict)]
    inner = _inner_metadata(info.annotation)  # the elements' text, for a tuple
    texts = [t for t in ((inner + own) if isinstance(loc[-1], int) else (own + inner)) if t]
    if not texts:
        return None
    n_heads = raw.get("model", {}).get("n_heads") if isinstance(raw.get("model"), Mapping) \
        else None
    return str(texts[0]).replace("{n_heads}", str(n_heads))


def _inner_metadata(annotation: Any) -> list[str]:
    from typing import get_args

    out: list[str] = []
    for arg in get_args(annotation):
        for m in getattr(arg, "__metadata__", ()):
            extra = getattr(m, "json_schema_extra", None)
            if isinstance(extra, dict) and "allowed" in extra:
                out.append(extra["allowed"])
        out += _inner_metadata(arg)
    return out


def _keys_of(section: str | None) -> list[str]:
    if section is None:
        return [f.name for f in fields(Params)]
    if section == "presets":
        return [f.name for f in fields(Preset)]
    cls = _section_class(section)
    return [f.name for f in fields(cls)] if cls else []


def _raw_at(raw: Mapping[str, Any], path: list[str]) -> Any:
    node: Any = raw
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _message(err: Mapping[str, Any], raw: Mapping[str, Any]) -> str:
    loc = tuple(err["loc"])
    if not loc:  # a check of the whole file, which names its key itself
        return str(err["msg"])
    if isinstance(loc[-1], int) and not isinstance(_raw_at(raw, _field_path(loc)), list):
        loc = loc[:-1]  # a scalar given for a grid axis: name the key itself
    key = _dotted(loc)
    kind = err["type"]
    path = _field_path(loc)
    section = None if len(path) <= 1 else ("presets" if path[0] == "presets" else path[0])
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        if section is None:
            return (f"{key}: unknown top-level key; allowed: "
                    + ", ".join(_keys_of(None)))
        return (f"{key}: unknown key; allowed keys in {key.rsplit('.', 1)[0]}: "
                + ", ".join(_keys_of(section)))
    if kind == "missing":
        if section is None:
            if key in ("attn_rate", "width", "seed"):
                return f"{key}: missing (a grid axis)"
            return (f"{key}: missing or not a mapping; expected keys: "
                    + ", ".join(_keys_of(key)))
        extra = ("; scripts/preset.sh copies every one of " if section == "presets"
                 else f"; allowed keys in {key.rsplit('.', 1)[0]}: ")
        return f"{key}: missing{extra}" + ", ".join(_keys_of(section))
    if kind in ("dataclass_type", "dataclass_args_type", "dict_type", "model_type"):
        return (f"{key}: missing or not a mapping; expected keys: "
                + ", ".join(_keys_of(path[-1] if path else None)))
    if kind == "params":
        msg = str(err["msg"])
        if isinstance(err.get("input"), Mapping):
            return msg  # a check of a whole section, which names its key itself
        return f"{key} = {err.get('input')!r}: {msg}"
    allowed = _allowed_text(loc, raw)
    text = f"must be {allowed}" if allowed else str(err["msg"])
    return f"{key} = {err.get('input')!r}: {text}{_hint(err.get('input'), allowed)}"


def _hint(value: object, allowed: str | None) -> str:
    """What to write instead, for the two values YAML reads otherwise than a reader expects."""
    wants_int = allowed is not None and "integer" in allowed
    if isinstance(value, float) and value.is_integer() and wants_int:
        return f" (write {int(value)}, without the decimal point)"
    if isinstance(value, str) and not wants_int:
        try:
            number = float(value)
        except ValueError:
            return ""
        mantissa, _, exponent = value.strip().lower().partition("e")
        if exponent:  # YAML 1.1 reads 2e-3 and 1.0e5 as text; 2.0e-3 and 1.0e+5 are numbers
            sign = "" if exponent[0] in "+-" else "+"
            dot = "" if "." in mantissa else ".0"
            return f" (YAML reads {value} as text: write {mantissa}{dot}e{sign}{exponent})"
        return f" (a number written as text: write {number!r} without quotes)"
    return ""


def parse_params(raw: object) -> Params:
    """Validate a params mapping (as read from YAML); ParamsError names the first fault."""
    if not isinstance(raw, Mapping):
        raise ParamsError("params.yaml: top level must be a mapping of keys to values")
    _refuse_non_string_keys(raw)
    _refuse_misspelt_keys(raw)
    _refuse_beyond_int64(raw, "")
    try:
        return _ADAPTER.validate_python(dict(raw))
    except ValidationError as e:
        raise ParamsError(_message(e.errors()[0], raw)) from None
