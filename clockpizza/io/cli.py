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
    except OSError as e:  # a connection refused, a disk full: the one line, no traceback
        print(f"[{name}] error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        # Outputs are written whole or not at all, and training resumes from its checkpoint.
        print(f"\n[{name}] interrupted; rerun `dvc repro` to go on from where it stopped",
              file=sys.stderr)
        sys.exit(130)
