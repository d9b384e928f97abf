#!/usr/bin/env bash
# Wheels for what a bare GPU machine with PyTorch but no network lacks (the params schema's
# pydantic and its needs), built for its Python 3.12 on x86-64 Linux, into .wheels/ (git-ignored).
# Run here, where pip reaches PyPI; scripts/gpu_check.sh installs them there with
#   python3 -m pip install --no-index --find-links .wheels --target DIR pydantic
#   bash scripts/device_wheels.sh            # the versions this checkout's venv has
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.wheels
mkdir -p "$dest"
# The versions installed here (the ones the tests pass with); pydantic_core is pinned by pydantic.
pins=$(python3 - <<'PY'
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in
               ("pydantic", "pydantic_core", "annotated_types", "typing_inspection",
                "typing_extensions")))
PY
)
# shellcheck disable=SC2086  # one argument per pin
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$dest" $pins
ls "$dest"
