"""The render stage draws only the figures whose inputs changed; the others' bytes come back
from the cache exactly as a fresh drawing would make them."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
from fake_runs import make_runs

from clockpizza.figures import cache
from clockpizza.figures.cache import save_figures
from clockpizza.figures.plots import fixed_width, phase_diagram
from clockpizza.figures.report import FIG1, FIG2, figure_recipes
from clockpizza.results.boundary import fit_main


def _recipes(runs, n_boot: int = 0):
    return figure_recipes(runs, fig1_width=64, boundary=fit_main(runs, n_boot=n_boot))


def _bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_cached_figure_has_the_bytes_of_a_fresh_drawing(tmp_path: Path) -> None:
    runs = make_runs()
    recipes = _recipes(runs)
    assert {FIG1, FIG2} <= set(recipes)
    fresh = save_figures(recipes, tmp_path / "fresh", None)  # no cache: every figure drawn
    assert fresh == list(recipes)
    first = save_figures(recipes, tmp_path / "a", tmp_path / "cache")
    assert first == list(recipes)  # an empty cache draws everything
    # the stage's outputs are removed before each run (DVC): they come back from the cache
    second = save_figures(_recipes(runs.copy()), tmp_path / "b", tmp_path / "cache")
    assert second == []
    assert _bytes(tmp_path / "b") == _bytes(tmp_path / "a") == _bytes(tmp_path / "fresh")
    assert len(_bytes(tmp_path / "b")) == 2 * len(recipes)  # a PNG and an SVG each


def test_only_the_figures_whose_data_changed_are_drawn_again(tmp_path: Path) -> None:
    runs = make_runs()
    store = tmp_path / "cache"
    save_figures(_recipes(runs), tmp_path / "a", store)
    # a new bootstrap changes the boundary's band, which only figure 2 draws
    assert save_figures(_recipes(runs, n_boot=20), tmp_path / "b", store) == [FIG2]
    assert (tmp_path / "b" / f"{FIG2}.png").read_bytes() != \
        (tmp_path / "a" / f"{FIG2}.png").read_bytes()
    # one run's GS moved: both figures show it
    moved = runs.copy()
    moved.loc[0, "gradient_symmetricity"] = 1.0 - moved.loc[0, "gradient_symmetricity"]
    drawn = save_figures(_recipes(moved, n_boot=20), tmp_path / "c", store)
    assert set(drawn) >= {FIG1, FIG2}
    # and the same arguments to another plotting function are another figure
    assert cache.recipe_key("x", partial(fixed_width, runs, 64, None)) != \
        cache.recipe_key("x", partial(phase_diagram, runs, None))


def test_code_changes_miss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = make_runs()
    store = tmp_path / "cache"
    save_figures(_recipes(runs), tmp_path / "a", store)
    # an edit to the package (a plotting function, a colour) is a new code version
    monkeypatch.setattr(cache, "code_version", lambda: "edited")
    assert set(save_figures(_recipes(runs), tmp_path / "b", store)) == set(_recipes(runs))


def test_the_cache_directory_can_be_moved_or_turned_off(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    monkeypatch.delenv(cache.ENV, raising=False)
    assert cache.cache_dir() == cache.DEFAULT_DIR
    monkeypatch.setenv(cache.ENV, str(tmp_path))
    assert cache.cache_dir() == tmp_path
    monkeypatch.setenv(cache.ENV, "off")
    assert cache.cache_dir() is None


@pytest.mark.parametrize("damage", ["garbage-db", "a-file-in-the-way"])
def test_a_broken_cache_draws_every_figure_and_says_so(tmp_path: Path, damage: str,
                                                       capsys: pytest.CaptureFixture) -> None:
    runs = make_runs()
    recipes = _recipes(runs)
    store = tmp_path / "cache"
    if damage == "garbage-db":
        store.mkdir()
        (store / "cache.db").write_bytes(b"not a database" * 100)
    else:
        store.write_text("a file where the cache directory should be")
    assert save_figures(recipes, tmp_path / "out", store) == list(recipes)
    assert "figure cache" in capsys.readouterr().err
    save_figures(recipes, tmp_path / "fresh", None)
    assert _bytes(tmp_path / "out") == _bytes(tmp_path / "fresh")


def test_a_half_kept_figure_is_drawn_again(tmp_path: Path) -> None:
    import diskcache

    runs = make_runs()
    recipes = _recipes(runs)
    store = tmp_path / "cache"
    save_figures(recipes, tmp_path / "a", store)
    with diskcache.Cache(str(store)) as c:  # its SVG went (evicted, or deleted by hand)
        assert c.delete(cache.recipe_key(FIG1, recipes[FIG1]) + ".svg")
    assert save_figures(recipes, tmp_path / "b", store) == [FIG1]
    assert _bytes(tmp_path / "b") == _bytes(tmp_path / "a")
