"""Before a GPU run: can this machine run the device plan at all? In seconds, before any work.

    python3 -m clockpizza.tools.preflight [--require-gpu] [--json FILE]

Imports every module the device plan (scripts/gpu_check.sh) runs, then prints the versions of
Python, torch, numpy, pandas and pyarrow and the GPU. A missing module stops it with one line
naming the module and what needs it (exit 1); ``--require-gpu`` also stops where torch sees no
CUDA device. On a machine without network the params schema's pydantic comes as wheels:
``bash scripts/device_wheels.sh`` fetches them where pip works (README, "On a GPU").
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
from pathlib import Path

# Third-party modules first (what a bare machine may lack), then the project's entry points of
# the device plan, which import the rest of the package.
THIRD_PARTY = ("torch", "numpy", "pandas", "pyarrow", "yaml", "safetensors", "tqdm",
               "pydantic", "pydantic_core", "annotated_types", "typing_inspection")
PLAN_MODULES = ("clockpizza.tools.paper_scale", "clockpizza.tools.precision",
                "clockpizza.tools.bench", "clockpizza.tools.cuda_check")


def missing_modules(names: tuple[str, ...] = THIRD_PARTY + PLAN_MODULES) -> list[str]:
    """``"module (needed by importer)"`` for each module that cannot be imported."""
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as e:
            lacking = getattr(e, "name", None) or str(e)
            missing.append(lacking if lacking == name else f"{lacking} (needed by {name})")
    return list(dict.fromkeys(missing))


def environment() -> dict[str, object]:
    """Versions and the GPU, for the log and the run's archive."""
    import numpy
    import pandas
    import pyarrow
    import torch

    info: dict[str, object] = {
        "python": platform.python_version(), "machine": platform.machine(),
        "torch": torch.__version__, "numpy": numpy.__version__, "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__, "cuda_build": torch.version.cuda,
        "cuda": torch.cuda.is_available(), "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}",
                    multiprocessors=props.multi_processor_count)
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m clockpizza.tools.preflight",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--require-gpu", action="store_true", help="fail where CUDA is absent")
    ap.add_argument("--json", type=Path, default=None, help="also write the versions here")
    args = ap.parse_args(argv)
    missing = missing_modules()
    if missing:
        print(f"[preflight] missing: {', '.join(missing)} (on a machine without network: "
              "bash scripts/device_wheels.sh, README 'On a GPU')", file=sys.stderr)
        return 1
    info = environment()
    print("[preflight] " + " ".join(f"{k}={v}" for k, v in info.items()))
    if args.json is not None:
        args.json.write_text(json.dumps(info, indent=1) + "\n")
    if args.require_gpu and not info["cuda"]:
        print("[preflight] missing: a CUDA device (torch.cuda.is_available() is False)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
