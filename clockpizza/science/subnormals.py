"""Subnormal floats read and written as zero in every thread of PyTorch's CPU pool
(``train.flush_denormals``).

Late in training the softmax gives most wrong answers probabilities below 1.2e-38 (float32's
smallest normal number) and their gradients follow; some CPUs compute each such number on a slow
path (README, "Subnormal floats late in training"). The CPU's flush mode belongs to each thread,
and ``torch.set_flush_denormal`` sets it on the calling thread only: the worker threads of an
OpenMP pool started earlier would keep their subnormals and compute part of every operation the
slow way, and with other rounding. So the mode is set on every thread of the pool, through the
OpenMP runtime PyTorch ships (a parallel region whose threads each set their own), and checked
on a tensor large enough to reach every thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

# Subnormal in float32 (the smallest normal is 1.18e-38), so flushed to zero where the mode is on.
_SUBNORMAL = 1e-39
# Elements per thread in the check: above the grain size of PyTorch's parallel loops (32 768),
# so every thread of the pool gets its share.
_PER_THREAD = 1 << 16


def flushing() -> bool | None:
    """Whether the CPU arithmetic of every pool thread now flushes subnormals (True), none does
    (False), or only some do (None)."""
    n = _PER_THREAD * max(torch.get_num_threads(), 1)
    kept = int(torch.count_nonzero(torch.full((n,), _SUBNORMAL) * 1.0))
    return True if kept == 0 else False if kept == n else None


def _loaded_libraries() -> str:
    """The shared objects mapped into this process (Linux); empty elsewhere."""
    try:
        return Path("/proc/self/maps").read_text()
    except OSError:
        return ""


@functools.cache
def _openmp() -> ctypes.CDLL | None:
    """The GNU OpenMP runtime that PyTorch's Linux wheels ship, where this process already uses
    it; None elsewhere (another runtime, which a second one loaded beside it would fight), and
    then only the calling thread's mode is set."""
    lib = Path(torch.__file__).parent / "lib"
    loaded = _loaded_libraries()
    for path in sorted(lib.glob("libgomp*.so*")):
        if str(path.resolve()) not in loaded and str(path) not in loaded:
            continue
        try:
            gomp = ctypes.CDLL(str(path))
            gomp.GOMP_parallel.argtypes = [_REGION, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
            gomp.GOMP_parallel.restype = None
        except (OSError, AttributeError):
            continue
        return gomp
    return None


_REGION = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def _set_everywhere(on: bool) -> bool:
    """Set the mode on this thread and on every thread of the pool; False where the CPU has no
    such mode."""
    if not torch.set_flush_denormal(on):
        return False
    gomp = _openmp()
    if gomp is not None:
        region = _REGION(lambda _: torch.set_flush_denormal(on))
        gomp.GOMP_parallel(region, None, torch.get_num_threads(), 0)
    return True


@contextlib.contextmanager
def denormals_flushed(flush: bool) -> Iterator[None]:
    """Every pool thread flushes subnormals inside (``flush``) or keeps them (not ``flush``),
    whatever the process had before; the mode found is restored afterwards."""
    before = flushing()
    if before is flush:
        yield
        return
    if not _set_everywhere(flush):
        if flush:
            warnings.warn("train.flush_denormals: this CPU cannot flush subnormal floats; "
                          "training with them as they are", RuntimeWarning, stacklevel=3)
        yield
        return
    if flushing() is not flush:
        warnings.warn(f"train.flush_denormals = {str(flush).lower()}: not every thread of the "
                      "CPU pool took it (an OpenMP runtime other than PyTorch's GNU one?); "
                      "set torch.set_num_threads(1) for runs that must match",
                      RuntimeWarning, stacklevel=3)
    try:
        yield
    finally:
        _set_everywhere(bool(before))
