"""The CI a fork runs (.github/workflows/ci.yml) cannot run here: it is linted with actionlint,
and it, like .ci/run, runs exactly the README's test command."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github/workflows/ci.yml"


def actionlint() -> str:
    # The environment's own first (the dev extra installs it), then PATH.
    here = Path(sys.executable).parent / "actionlint"
    found = str(here) if here.is_file() else shutil.which("actionlint")
    assert found, "actionlint is not installed: bash scripts/setup.sh --tests (the dev extra)"
    return found


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([actionlint(), "-no-color", str(path)], capture_output=True,
                          text=True, cwd=path.parent)


def readme_test_command() -> str:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "README.md has no bash block at the top"
    lines = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    tests = [line for line in lines if "pytest" in line]
    assert len(tests) == 1, lines
    return tests[0]


def test_the_workflow_passes_actionlint() -> None:
    res = lint(WORKFLOW)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("good, bad", [
    ("    runs-on: ubuntu-24.04\n", ""),  # a job with nowhere to run
    ("github.event.pull_request.number", "matrix.number"),  # a context that is not there
    ("timeout-minutes: 30", "timeout-minutes: thirty"),  # a number that is not one
    ("          path: .venv", "          paths: .venv"),  # an input actions/cache does not have
], ids=["no-runs-on", "undefined-context", "not-a-number", "unknown-input"])
def test_actionlint_refuses_a_broken_workflow(tmp_path: Path, good: str, bad: str) -> None:
    text = WORKFLOW.read_text()
    assert good in text
    broken = tmp_path / ".github/workflows/ci.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(text.replace(good, bad, 1))
    res = lint(broken)
    assert res.returncode != 0, f"actionlint passed a broken workflow:\n{broken.read_text()}"


def test_ci_runs_exactly_the_readme_test_command() -> None:
    command = readme_test_command()
    steps = [step.get("run", "") for job in yaml.safe_load(WORKFLOW.read_text())["jobs"].values()
             for step in job["steps"]]
    assert command in steps, (command, steps)
    assert command in (ROOT / ".ci/run").read_text().splitlines()
