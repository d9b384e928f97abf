"""Each figure drawn once per content.

A figure is a pure function of the tables and values it is given (``plots.py``), so its PNG and
SVG bytes can be kept under a hash of exactly that: the plotting function, its arguments, and
the source of this package and the versions of the plotting libraries. The render stage then
redraws only the figures whose inputs changed: a new ``boundary.n_boot`` redraws the two phase
diagrams and nothing else. Saving is most of a figure's cost (matplotlib lays out and writes
each one twice), which is why the bytes are kept, not the Figure.

The builders (:func:`clockpizza.figures.report.figure_recipes` and the others) return
*recipes*: ``functools.partial(plotting_function, *tables)``, called only on a miss. A key that
misses when it could have hit (the same data in a differently laid-out frame) costs one
drawing; a key can only hit for arguments that pickle to the same bytes, which is the same data.
What the key does not see is the machine's fonts and a user's matplotlibrc: after changing
those, delete ``.cache/figures`` (or set ``CLOCKPIZZA_FIGURE_CACHE=off``).
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Mapping
from functools import cache
from importlib.metadata import version
from pathlib import Path

import diskcache

from clockpizza.figures.plots import FigureRecipe, save
from clockpizza.io.table import atomic_write

EXTS = (".png", ".svg")  # what :func:`clockpizza.figures.plots.save` writes
# Where the render stage keeps the bytes (ignored by git; deleting it only costs a redraw).
DEFAULT_DIR = Path(".cache/figures")
ENV = "CLOCKPIZZA_FIGURE_CACHE"  # a directory instead of DEFAULT_DIR; "off" draws every figure
SIZE_LIMIT = 512 * 2**20  # least recently used entries go beyond this (a default repro: ~6 MB)
_LIBRARIES = ("matplotlib", "seaborn", "numpy", "pandas")


@cache
def code_version() -> str:
    """A hash of every source file and template of the package and the plotting libraries'
    versions: any change to the code that draws (or that computes what it is given) misses."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".j2") and p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for lib in _LIBRARIES:
        h.update(f"{lib}={version(lib)}\0".encode())
    return h.hexdigest()


def recipe_key(stem: str, recipe: FigureRecipe) -> str:
    """The content hash a recipe's bytes are kept under."""
    fn = recipe.func
    payload = (stem, fn.__module__, fn.__qualname__, recipe.args,
               sorted(recipe.keywords.items()), code_version())
    return hashlib.sha256(pickle.dumps(payload, protocol=5)).hexdigest()


def cache_dir(default: Path = DEFAULT_DIR) -> Path | None:
    """The cache directory ``$CLOCKPIZZA_FIGURE_CACHE`` names (None for "off"), else ``default``."""
    value = os.environ.get(ENV, "")
    if value.lower() == "off":
        return None
    return Path(value) if value else default


def save_figures(recipes: Mapping[str, FigureRecipe], out_dir: str | Path,
                 directory: Path | None) -> list[str]:
    """Write ``out_dir/<stem>.png`` and ``.svg`` for every recipe, drawing only those whose bytes
    ``directory`` does not hold (every one when it is None); returns the stems drawn."""
    out_dir = Path(out_dir)
    drawn: list[str] = []
    store = None if directory is None else diskcache.Cache(str(directory), size_limit=SIZE_LIMIT)
    try:
        for stem, recipe in recipes.items():
            key = recipe_key(stem, recipe)
            blobs = None if store is None else store.get(key)
            if blobs is None:
                paths = save(recipe(), out_dir / stem)
                drawn.append(stem)
                if store is not None:
                    store.set(key, {p.suffix: p.read_bytes() for p in paths})
                continue
            for ext in EXTS:
                atomic_write(out_dir / f"{stem}{ext}",
                             lambda t, data=blobs[ext]: Path(t).write_bytes(data))
    finally:
        if store is not None:
            store.close()
    return drawn
