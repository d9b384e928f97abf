"""The layout is the caching boundary: every module a stage imports is a DVC dep of that stage,
and the package's layers point one way (import-linter contracts in pyproject.toml).

A missed dep is a stale result: DVC would skip a stage whose code changed. So the imports of each
stage script are followed through the package (statically, every ``import`` anywhere in a module,
function-level ones included) and each module reached must lie under one of the stage's deps.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "clockpizza"

# Modules a stage may import without declaring them, each with its reason. Nothing else.
UNDECLARED_OK: dict[str, str] = {
    "clockpizza/__init__.py": "holds only __version__, written into each run's config.json as "
                              "information; a version bump must not retrain the grid",
}


def _module_file(module: str, root: Path) -> Path | None:
    base = root.joinpath(*module.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imports(path: Path, root: Path) -> set[str]:
    """Package modules ``path`` imports (with the packages they sit in)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] != PACKAGE:
                continue
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b first
                if _module_file(".".join(parts[:i]), root) is not None:
                    found.add(".".join(parts[:i]))
    return found


def import_closure(script: Path, root: Path = ROOT) -> set[str]:
    """Repository-relative files of every package module ``script`` reaches."""
    todo, seen = list(_imports(script, root)), set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        todo.extend(_imports(_module_file(mod, root), root) - seen)  # type: ignore[arg-type]
    return {_module_file(m, root).relative_to(root).as_posix() for m in seen}  # type: ignore[union-attr]


def missing_deps(stage: dict, root: Path = ROOT) -> list[str]:
    """Modules the stage's script reaches that none of its deps covers (exceptions aside)."""
    script = next(w for w in stage["cmd"].split() if w.startswith("stages/") and w.endswith(".py"))
    deps = [str(d).rstrip("/") for d in stage.get("deps", [])]
    if script not in deps:
        return [f"{script} (the stage script itself)"]
    return sorted(f for f in import_closure(root / script, root)
                  if f not in UNDECLARED_OK
                  and not any(f == d or f.startswith(d + "/") for d in deps))


def _stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", sorted(_stages()))
def test_every_module_a_stage_imports_is_one_of_its_deps(name: str) -> None:
    assert missing_deps(_stages()[name]) == [], (
        f"dvc.yaml stage {name!r} imports modules it does not list under deps: a change in them "
        "would not rerun it")


def test_the_check_catches_a_dropped_folder() -> None:
    train = dict(_stages()["train"])
    train["deps"] = [d for d in train["deps"] if d != "clockpizza/science"]
    missing = missing_deps(train)
    assert "clockpizza/science/model.py" in missing
    assert "clockpizza/science/train.py" in missing


def test_the_exceptions_are_real_modules() -> None:
    for f in UNDECLARED_OK:
        assert (ROOT / f).is_file(), f"UNDECLARED_OK names {f}, which does not exist"


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or \
        shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports not found: `bash scripts/setup.sh --tests` installs it")
    return subprocess.run([exe], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"})


def test_import_contracts_hold() -> None:
    r = _lint_imports(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_import_contracts_fail_when_figures_import_torch(tmp_path: Path) -> None:
    shutil.copytree(ROOT / PACKAGE, tmp_path / PACKAGE,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    plots = tmp_path / PACKAGE / "figures" / "plots.py"
    plots.write_text(plots.read_text().replace("import numpy as np\n",
                                               "import numpy as np\nimport torch\n", 1))
    r = _lint_imports(tmp_path)
    assert r.returncode != 0
    assert "never import torch" in r.stdout and "BROKEN" in r.stdout


def import_cycles(root: Path = ROOT) -> list[list[str]]:
    """Cycles among the package's modules, function-level imports included (the parent
    packages an import runs on the way are not counted: they hold no code)."""
    modules = {p.relative_to(root).with_suffix("").as_posix().replace("/", ".")
               .removesuffix(".__init__"): p for p in (root / PACKAGE).rglob("*.py")}
    graph = {m: {i for i in _imports(p, root) if i in modules and i != m
                 and _module_file(i, root).name != "__init__.py"}  # type: ignore[union-attr]
             for m, p in modules.items()}
    cycles, state = [], dict.fromkeys(graph, 0)  # 0 new, 1 on the stack, 2 done

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state[n] == 1:
                cycles.append([*stack[stack.index(n):], n])
            elif state[n] == 0:
                visit(n, [*stack, n])
        state[m] = 2

    for m in sorted(graph):
        if state[m] == 0:
            visit(m, [m])
    return cycles


def test_the_package_has_no_import_cycle() -> None:
    assert import_cycles() == []


def test_the_cycle_check_sees_a_function_level_import(tmp_path: Path) -> None:
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from clockpizza import b\n")
    (pkg / "b.py").write_text("def f():\n    from clockpizza.a import x\n")
    assert import_cycles(tmp_path) == [["clockpizza.a", "clockpizza.b", "clockpizza.a"]]
