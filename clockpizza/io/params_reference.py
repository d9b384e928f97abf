"""The README's params reference, generated from the schema (``python -m clockpizza.io.params``
prints it; tests/test_config.py checks the README's copy)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from clockpizza.io.params_messages import _allowed_text, _raw_at, schema_keys

_NO_ALLOWED_TEXT = {
    "train.snapshots": "log, none, or a list of steps (integers >= 0)",
    "render.clock_run_id": "null or a run id (12 hex digits)",
    "render.pizza_run_id": "null or a run id (12 hex digits)",
    "mlp_family.models": "a list of A, B, C, D, X ([] for none)",
    "presets": "named grids: attn_rate, width, seed, steps, n_layers, init_per_run, "
               "split_per_run each",
}


def reference_table(raw: Mapping[str, Any]) -> str:
    """The README's params reference, generated from the schema: every key with its value in
    ``raw`` (params.yaml) and what the schema allows (``python -m clockpizza.io.params``)."""
    rows = ["| key | default | allowed |", "|---|---|---|"]
    for key in schema_keys():
        value = _raw_at(raw, key.split("."))
        shown = "…" if key == "presets" else json.dumps(value, ensure_ascii=False)
        allowed = _NO_ALLOWED_TEXT.get(key) or _allowed_text(tuple(key.split(".")), raw) or ""
        if key in ("width", "seed"):
            allowed += " (a list: a grid axis)"
        elif key == "attn_rate":
            allowed += " (a value or a list)"
        rows.append(f"| `{key}` | `{shown}` | {allowed} |")
    return "\n".join(rows) + "\n"
