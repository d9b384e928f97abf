#!/usr/bin/env bash
# Install clockpizza and its tools into the active Python environment.
#   bash scripts/setup.sh           the pipeline (dvc repro) and its command-line tools
#   bash scripts/setup.sh --tests   also what the test suite needs: pytest, ruff and the optional
#                                   TransformerLens extra (its interoperability test runs in CI)
#                                   and the Ray extra (the train.backend: ray tests run in CI)
#
# torch: if one is already installed (for example a CUDA build on a GPU machine) it is kept.
# Otherwise a GPU machine gets the default build and a machine without one the CPU build, so a
# laptop never downloads several GB of CUDA libraries. Override with TORCH_SPEC (the requirement,
# default torch==2.13.0) and TORCH_INDEX_URL (an extra index, e.g. PyTorch's CPU wheel index).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras="dev"
case "${1:-}" in
  "") ;;
  --tests) extras="dev,tl,ray" ;;
  *) echo "usage: bash scripts/setup.sh [--tests]" >&2; exit 2 ;;
esac

if "$PY" -c "import torch" 2>/dev/null; then
  echo "setup: keeping installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
  spec=${TORCH_SPEC:-torch==2.13.0}
  extra=()
  if [ -n "${TORCH_INDEX_URL:-}" ]; then extra=(--extra-index-url "$TORCH_INDEX_URL"); fi
  if command -v nvidia-smi >/dev/null 2>&1; then
    echo "setup: GPU found, installing $spec (CUDA build)"
  else
    echo "setup: no GPU found, installing $spec (CPU build where the index offers one)"
  fi
  "$PY" -m pip install ${PIP_FLAGS:-} "${extra[@]}" "$spec"
fi
"$PY" -m pip install ${PIP_FLAGS:-} -e ".[$extras]"
"$PY" -c "import torch; print('setup: torch', torch.__version__, '| CUDA available:', torch.cuda.is_available())"
