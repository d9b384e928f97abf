"""The README's first command from a clean clone with no environment active: scripts/setup.sh
makes .venv (git-ignored) and installs exactly the locked versions into it, on a system Python that
refuses installs outside an environment (PEP 668) where the machine has one."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def base_python() -> str:
    """Debian/Ubuntu's own python3 where it is externally managed (the case that failed before),
    otherwise the interpreter this test environment was made from."""
    system = Path("/usr/bin/python3")
    if system.is_file():
        stdlib = subprocess.run([str(system), "-c", "import sysconfig; "
                                 "print(sysconfig.get_path('stdlib'))"],
                                capture_output=True, text=True).stdout.strip()
        if stdlib and (Path(stdlib) / "EXTERNALLY-MANAGED").is_file():
            return str(system)
    return str(Path(sys.base_prefix) / "bin" / "python3")


def clean_env() -> dict[str, str]:
    """This environment without any virtual environment active."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "CONDA_PREFIX")}
    venv_bins = {str(Path(sys.prefix) / "bin"), str(ROOT / ".venv" / "bin")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p not in venv_bins)
    return env


def clone(dest: Path) -> Path:
    """The tracked files in a fresh git repository: what `git clone` gives a user."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file() and not f.startswith(".venv/"):
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    for cmd in (["git", "init", "-q"], [*git, "add", "-A"], [*git, "commit", "-qm", "clone"]):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)
    return dest


def locked(lock: Path) -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==([^ \\\n]+)", lock.read_text(), re.M)
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pins}


def requirement_names(specs: list[str]) -> set[str]:
    return {re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0]).lower()
            for spec in specs}


@pytest.mark.parametrize("lock, extras", [("main.txt", ["dev"]),
                                          ("tests.txt", ["dev", "tl", "ray"])])
def test_the_locks_pin_every_dependency_pyproject_declares(lock: str,
                                                           extras: list[str]) -> None:
    # A dependency added to pyproject.toml without `pip-compile` (README: updating the lock)
    # would be missing from a set-up: --no-deps installs the lock and nothing else.
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 on
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = requirement_names(project["dependencies"] + [
        spec for extra in extras for spec in project["optional-dependencies"][extra]])
    missing = declared - {"torch"} - set(locked(ROOT / "requirements" / lock))
    assert not missing, f"requirements/{lock} lacks {sorted(missing)}: regenerate it"


@pytest.mark.slow
def test_setup_makes_a_project_environment_with_the_locked_versions(tmp_path: Path) -> None:
    repo = clone(tmp_path / "clone")
    python = base_python()
    res = subprocess.run(["bash", "scripts/setup.sh"], cwd=repo,
                         env={**clean_env(), "PYTHON": python}, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "making .venv" in res.stdout, res.stdout

    # The README's next step: activate, then the tools and this clone's package are there.
    shown = subprocess.run(
        ["bash", "-c", ". .venv/bin/activate && dvc version >/dev/null && python -c "
         "'import clockpizza; print(clockpizza.__file__)' && python -m pip freeze --all"],
        cwd=repo, env=clean_env(), capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    first, *freeze = shown.stdout.splitlines()
    assert Path(first).resolve().is_relative_to(repo.resolve()), first
    installed = {re.sub(r"[-_.]+", "-", n).lower(): v
                 for n, _, v in (line.partition("==") for line in freeze if "==" in line)}
    want = locked(repo / "requirements/main.txt")
    wrong = {n: (v, installed.get(n)) for n, v in want.items() if installed.get(n) != v}
    assert not wrong, f"installed versions differ from requirements/main.txt: {wrong}"

    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True,
                            text=True, check=True).stdout
    assert status == "", f"setup left files git does not ignore:\n{status}"
