"""The commands the docs print exist: every key a `-S`/`--set` sets is one the params schema
declares, every preset named is in params.yaml, every script named is in scripts/ (issue 12: the
report once suggested keys that do not exist and params.yaml named a missing script)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from clockpizza.io.params import schema_keys

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", ROOT / "params.yaml", ROOT / "report/README.md",
               *(ROOT / "results").rglob("README.md"),
               *(ROOT / "clockpizza/figures/templates").glob("*.j2"),
               *(ROOT / "scripts").glob("*.sh")])
# `-S 'model.n_layers=[1,2]'`, `--set width=[32]`, `-S +unknown_key=1` (quoted or not)
SET = re.compile(r"(?:-S|--set) +['\"]?(\+?)([A-Za-z_][A-Za-z0-9_.]*)=")
# Deliberate exceptions, with their reason.
NOT_KEYS = {"key": "the README's generic `-S key=value` syntax",
            "unknown_key": "the README's example of a refused unknown key (`+unknown_key=1`)"}


def _sets(path: Path) -> list[tuple[str, str]]:
    return [(plus, key) for plus, key in SET.findall(path.read_text())]


def test_the_docs_set_keys_at_all() -> None:  # the scan itself finds what it is meant to
    found = {key for path in DOCS for _, key in _sets(path)}
    assert {"attn_rate", "model.n_layers", "mlp_family.models"} <= found, found


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_key_the_docs_set_is_a_params_key(path: Path) -> None:
    keys = set(schema_keys())
    wrong = [key for _, key in _sets(path) if key not in keys and key not in NOT_KEYS]
    assert not wrong, f"{path.relative_to(ROOT)} sets keys params.yaml does not have: {wrong}"


def test_every_preset_and_script_the_docs_name_exists() -> None:
    presets = set(yaml.safe_load((ROOT / "params.yaml").read_text())["presets"])
    for path in DOCS:
        text = path.read_text()
        for script in re.findall(r"scripts/[A-Za-z0-9_.-]+\.sh", text):
            assert (ROOT / script).is_file(), f"{path.relative_to(ROOT)} names {script}"
        for name in re.findall(r"scripts/preset\.sh +([A-Za-z0-9_]+)", text):
            assert name in presets or name == "NAME", \
                f"{path.relative_to(ROOT)}: preset {name!r} is not in params.yaml ({presets})"
