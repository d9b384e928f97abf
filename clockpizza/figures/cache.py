"""Each figure drawn once per content.

A figure is a pure function of the tables and values it is given (``plots.py``), so its PNG and
SVG bytes can be kept under a hash of exactly that: the plotting function, its arguments, and
what else decides the bytes (the package's source, the plotting libraries' versions, the font
the house style resolves to). The render stage then redraws only the figures whose inputs
changed: a new ``boundary.n_boot`` redraws the two phase diagrams and nothing else. Saving is
most of a figure's cost (matplotlib lays out and writes each one twice), which is why the bytes
are kept, not the Figure.

The builders (:func:`clockpizza.figures.report.figure_recipes` and the others) return
*recipes*: ``functools.partial(plotting_function, *tables)``, called only on a miss. A key that
misses when it could have hit (the same data in a differently laid-out frame) costs one
drawing; a key can only hit for arguments that pickle to the same bytes, which is the same data.
The whole package's source is in the key on purpose: any edit redraws every figure once, rather
than trusting a list of the modules a figure depends on. A user's matplotlibrc is not in the
key (the house style overrides what the figures use); after changing one, delete
``.cache/figures`` or set ``CLOCKPIZZA_FIGURE_CACHE=off``.

The cache only ever saves time: a damaged, unwritable or full cache directory is reported once
and every figure is drawn, as without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import platform
import sqlite3
import sys
from collections.abc import Mapping
from functools import cache
from importlib.metadata import version
from pathlib import Path

import diskcache
from matplotlib import font_manager

from clockpizza.figures.plots import FigureRecipe, house_style, save
from clockpizza.io.table import atomic_write

EXTS = (".png", ".svg")  # what :func:`clockpizza.figures.plots.save` writes
# Where the render stage keeps the bytes (ignored by git; deleting it only costs a redraw).
DEFAULT_DIR = Path(".cache/figures")
ENV = "CLOCKPIZZA_FIGURE_CACHE"  # a directory instead of DEFAULT_DIR; "off" draws every figure
SIZE_LIMIT = 512 * 2**20  # beyond it, the least recently used figures go
# Everything that writes the bytes: the plots (matplotlib, seaborn), the data they are given
# (numpy, pandas), the PNG encoder (pillow) and the constrained layout's solver (kiwisolver).
_LIBRARIES = ("matplotlib", "seaborn", "numpy", "pandas", "pillow", "kiwisolver")
# What a broken cache raises (sqlite, the file system, a value cut short); all mean "draw".
_CACHE_ERRORS = (OSError, sqlite3.Error, diskcache.Timeout, EOFError, pickle.UnpicklingError)


@cache
def code_version() -> str:
    """A hash of every source file and template of the package, the Python and library
    versions, and the font file the house style draws its text with."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".j2") and p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for lib in _LIBRARIES:
        h.update(f"{lib}={version(lib)}\0".encode())
    house_style()
    font = Path(font_manager.findfont(font_manager.FontProperties(family=["sans-serif"])))
    # its name and size, not its path: the same font in another environment is the same font
    h.update(f"python={platform.python_version()}\0font={font.name}:{font.stat().st_size}\0"
             .encode())
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


class _Store:
    """The PNG and SVG bytes by key, in a size-limited diskcache (bytes are stored raw, never
    pickled); the first error turns it off for the rest of the run."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._cache: diskcache.Cache | None = None
        if directory is not None:
            try:
                self._cache = diskcache.Cache(str(directory), size_limit=SIZE_LIMIT)
            except _CACHE_ERRORS as e:
                self._off(e)

    def _off(self, e: BaseException) -> None:
        print(f"[render] the figure cache {self.directory} is unusable ({type(e).__name__}: "
              f"{e}); drawing every figure", file=sys.stderr)
        self.close()

    def get(self, key: str) -> dict[str, bytes] | None:
        """Both files' bytes, or None (not kept, or half kept)."""
        if self._cache is None:
            return None
        try:
            blobs = {ext: self._cache.get(key + ext) for ext in EXTS}
        except _CACHE_ERRORS as e:
            self._off(e)
            return None
        return blobs if all(isinstance(b, bytes) for b in blobs.values()) else None

    def set(self, key: str, blobs: Mapping[str, bytes]) -> None:
        if self._cache is None:
            return
        try:
            for ext in EXTS:
                self._cache.set(key + ext, blobs[ext])
        except _CACHE_ERRORS as e:
            self._off(e)

    def close(self) -> None:
        cache, self._cache = self._cache, None
        if cache is not None:
            with contextlib.suppress(*_CACHE_ERRORS):  # nothing of ours is left to write
                cache.close()


def save_figures(recipes: Mapping[str, FigureRecipe], out_dir: str | Path,
                 directory: Path | None) -> list[str]:
    """Write ``out_dir/<stem>.png`` and ``.svg`` for every recipe, drawing only those whose bytes
    ``directory`` does not hold (every one when it is None); returns the stems drawn."""
    out_dir = Path(out_dir)
    drawn: list[str] = []
    store = _Store(directory)
    try:
        for stem, recipe in recipes.items():
            key = recipe_key(stem, recipe)
            blobs = store.get(key)
            if blobs is None:
                paths = save(recipe(), out_dir / stem)
                drawn.append(stem)
                store.set(key, {p.suffix: p.read_bytes() for p in paths})
            else:
                for ext, data in blobs.items():
                    atomic_write(out_dir / f"{stem}{ext}", lambda t, d=data: t.write_bytes(d))
    finally:
        store.close()
    return drawn
