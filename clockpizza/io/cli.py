"""Shared wiring for the stage scripts: clear one-line errors instead of tracebacks."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from clockpizza.io.params import ParamsError


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run a stage's main(); a refused input exits non-zero with a message naming it."""
    logging.basicConfig(level=logging.INFO, format=f"[{name}] %(message)s")
    try:
        main()
    except ParamsError as e:
        print(f"[{name}] error in params.yaml: {e}", file=sys.stderr)
        sys.exit(2)
    except FileNotFoundError as e:
        print(f"[{name}] error: {e}", file=sys.stderr)
        sys.exit(1)
    except PermissionError as e:
        print(f"[{name}] error: {e.filename or e}: permission denied; make it writable (or "
              "remove it) and rerun", file=sys.stderr)
        sys.exit(1)
    except (RuntimeError, ValueError) as e:
        print(f"[{name}] error: {e}", file=sys.stderr)
        sys.exit(1)
