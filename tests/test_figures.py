"""Figures are drawn from the runs table: the data on the axes is the table's, the boundary on
figure 2 is the fitted one and recovers a planted line, and a figure without data is not drawn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fake_runs import is_main, make_runs, planted_alpha_star
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from clockpizza.figures import plots
from clockpizza.figures import plots_appendix as pa
from clockpizza.figures.report import ABLATIONS, FIG1, FIG2, FIGURES, LAYERS, MLP, figure_recipes
from clockpizza.results.boundary import fit_boundary, fit_main

GS, DI = "gradient_symmetricity", "distance_irrelevance"
FINE = tuple(np.round(np.arange(0.0, 1.0001, 0.1), 2))
WIDTHS = (32, 64, 128, 256)
N_BOOT = 50



@pytest.fixture(scope="module")
def grid() -> pd.DataFrame:
    return make_runs(alphas=FINE, widths=WIDTHS, seeds=(0, 1))


@pytest.fixture(scope="module")
def full() -> pd.DataFrame:
    return make_runs(alphas=(0.0, 0.3, 0.6, 1.0), widths=(32, 128), seeds=(0, 1),
                     layers=(1, 2), ablations=((False, False), (True, False), (False, True)),
                     mlp=("A", "B", "C", "D", "X"), non_circular=0.1, seed=3)


def collections(ax: Axes, gid: str) -> list[PathCollection]:
    return [c for c in ax.collections if c.get_gid() == gid]


def lines(ax: Axes, gid: str) -> list[Line2D]:
    return [ln for ln in ax.get_lines() if ln.get_gid() == gid]


def data_axes(fig: Figure) -> list[Axes]:
    """The axes that draw data (not colourbars), in creation order."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.axison]


# --------------------------------------------------------------------------------------------
# Figure 2 and the fitted boundary.


def test_fitted_boundary_recovers_the_planted_line(grid: pd.DataFrame) -> None:
    b = fit_main(grid, n_boot=N_BOOT)
    assert b is not None
    w = np.array(WIDTHS, dtype=float)
    est = np.array([b.transition_attn_rate(x) for x in w])
    # The planted line lies midway between grid points: a clean grid pins it to a tenth of the
    # step.
    np.testing.assert_allclose(est, planted_alpha_star(w), atol=0.01)
    lo, hi = b.band(w)
    # Both seeds put the line in the same place, and the band resamples seeds: it holds the
    # fit and stays within the grid's resolution of the planted line.
    assert np.all(lo <= est + 1e-9) and np.all(est <= hi + 1e-9)
    np.testing.assert_allclose(lo, planted_alpha_star(w), atol=0.01)
    np.testing.assert_allclose(hi, planted_alpha_star(w), atol=0.01)


def test_figure2_draws_the_fitted_boundary_at_the_plotted_widths(grid: pd.DataFrame) -> None:
    fig = plots.phase_diagram(grid, fit_main(grid, n_boot=N_BOOT))
    b = fit_boundary(grid[is_main(grid)], n_boot=N_BOOT, seed=0)
    assert b is not None
    axes = data_axes(fig)
    assert len(axes) == 2
    for ax in axes:
        (line,) = lines(ax, "phase-boundary")
        y = np.asarray(line.get_ydata(), dtype=float)
        x = np.asarray(line.get_xdata(), dtype=float)
        # The line covers the whole width axis ...
        assert y.min() == pytest.approx(ax.get_ylim()[0])
        assert y.max() == pytest.approx(ax.get_ylim()[1])
        # ... and is exactly alpha*(w) of the fit, which is the planted line.
        widths = 2.0**y
        np.testing.assert_allclose(x, [b.transition_attn_rate(w) for w in widths], rtol=1e-12)
        np.testing.assert_allclose(x, planted_alpha_star(widths), atol=0.01)
        (band,) = [c for c in ax.collections if c.get_gid() == "phase-boundary-band"]
        assert isinstance(band, PolyCollection)
        verts = band.get_paths()[0].vertices
        lo, hi = b.band(widths)
        assert verts[:, 0].min() == pytest.approx(min(lo.min(), hi.min()))
        assert verts[:, 0].max() == pytest.approx(max(lo.max(), hi.max()))
    assert "fitted boundary" in " ".join(t.get_text() for t in fig.legends[0].get_texts())


def test_figure2_squares_are_the_seed_means_of_the_table(grid: pd.DataFrame) -> None:
    fig = plots.phase_diagram(grid, fit_main(grid, n_boot=0))
    want = (grid[is_main(grid)].groupby(["width", "attn_rate"])[[GS, DI]].mean()
            .reset_index().sort_values(["width", "attn_rate"]))
    for ax, metric in zip(data_axes(fig), (GS, DI), strict=True):
        squares = ax.collections[0]
        xy = squares.get_offsets()
        np.testing.assert_array_equal(xy[:, 0], want["attn_rate"])
        np.testing.assert_array_equal(xy[:, 1], np.log2(want["width"]))
        np.testing.assert_allclose(squares.get_array(), want[metric], rtol=1e-12)
        assert squares.norm.vmin == 0.0 and squares.norm.vmax == 1.0
        assert len(lines(ax, "phase-boundary")) == 1  # n_boot = 0: the line, but no band
        assert not [c for c in ax.collections if c.get_gid() == "phase-boundary-band"]


def test_figure2_marks_grid_points_where_most_runs_are_non_circular(grid: pd.DataFrame) -> None:
    runs = grid.copy()
    broken = (runs["width"] == 64) & (runs["attn_rate"] == 0.3)
    runs.loc[broken, "phase"] = "non-circular"
    half = (runs["width"] == 128) & (runs["attn_rate"] == 0.9) & (runs["seed"] == 0)
    runs.loc[half, "phase"] = "non-circular"  # 1 of 2 runs: not most, no mark
    fig = plots.phase_diagram(runs, fit_main(runs, n_boot=0))
    for ax in data_axes(fig):
        (marks,) = collections(ax, "non-circular")
        np.testing.assert_array_equal(marks.get_offsets(), [[0.3, np.log2(64)]])


def test_figure2_without_a_boundary_says_why(grid: pd.DataFrame) -> None:
    for runs, reason in ((grid.assign(phase="pizza"), "0 clock"),
                         (grid[grid["attn_rate"] == 0.5], "same attention rate")):
        fig = plots.phase_diagram(runs, fit_main(runs, n_boot=N_BOOT))
        for ax in data_axes(fig):
            assert not lines(ax, "phase-boundary")
            (text,) = [t for t in ax.texts if t.get_gid() == "no-boundary"]
            assert reason in text.get_text().replace("\n", " ")


@pytest.mark.parametrize(("seeds", "drop", "want"), [
    ((0,), False, "1 seed per point"),
    ((0, 1, 2), False, "mean over 3 seeds per point"),
    ((0, 1, 2), True, "mean over 2–3 seeds per point"),
])
def test_figure2_title_counts_seeds_per_point(seeds: tuple[int, ...], drop: bool,
                                              want: str) -> None:
    runs = make_runs(seeds=seeds)
    if drop:
        runs = runs.drop(index=runs.index[0])
    title = plots.phase_diagram(runs, fit_main(runs, n_boot=0)).get_suptitle()
    assert want in title and f"{len(runs)} runs" in title


def test_figures_1_and_2_draw_only_one_layer_transformers_without_ablations(
        full: pd.DataFrame) -> None:
    main = full[is_main(full)]
    assert len(main) < len(full)
    for draw in (lambda r: plots.fixed_width(r, 128),
                 lambda r: plots.phase_diagram(r, fit_main(r, n_boot=0))):
        got, want = draw(full), draw(main)
        for a, b in zip(data_axes(got), data_axes(want), strict=True):
            np.testing.assert_array_equal(a.collections[0].get_offsets(),
                                          b.collections[0].get_offsets())
        assert got.get_suptitle() == want.get_suptitle()


def test_a_table_without_the_new_axes_is_all_main_runs() -> None:
    legacy = make_runs(legacy=True, alphas=FINE)
    assert "family" not in legacy.columns
    b = fit_main(legacy, n_boot=10)
    assert b == fit_boundary(legacy, n_boot=10)
    fig = plots.phase_diagram(legacy, fit_main(legacy, n_boot=10))
    assert f"{len(legacy)} runs" in fig.get_suptitle()


# --------------------------------------------------------------------------------------------
# Appendix figures.


def test_layers_figure_has_a_column_per_depth_with_the_tables_means(full: pd.DataFrame) -> None:
    fig = pa.layers_figure(full)
    axes = np.array(data_axes(fig)).reshape(2, -1)  # [metric row, depth]
    t = full[(full["family"] == "transformer") & ~full["diff_vocab"] & ~full["eqn_sign"]]
    depths = sorted(t["n_layers"].unique())
    assert axes.shape[1] == len(depths) == 2
    for col, n in enumerate(depths):
        sub = t[t["n_layers"] == n]
        want = sub.groupby(["width", "attn_rate"])[[GS, DI]].mean().reset_index()
        assert axes[0, col].get_title().startswith(f"{n} layer")
        assert f"{len(sub)} runs" in axes[0, col].get_title()
        for row, metric in enumerate((GS, DI)):
            (pts,) = collections(axes[row, col], "runs")
            np.testing.assert_array_equal(pts.get_offsets()[:, 0], want["attn_rate"])
            np.testing.assert_array_equal(pts.get_offsets()[:, 1], np.log2(want["width"]))
            np.testing.assert_allclose(pts.get_array(), want[metric], rtol=1e-12)
    assert f"{len(t)} runs" in fig.get_suptitle()


def test_layers_figure_at_one_width_plots_every_run_against_alpha() -> None:
    runs = make_runs(widths=(64,), layers=(1, 2), non_circular=0.2, seed=5)
    fig = pa.layers_figure(runs)
    axes = np.array(data_axes(fig)).reshape(2, -1)
    for col, n in enumerate((1, 2)):
        sub = runs[runs["n_layers"] == n].sort_values(["width", "attn_rate", "seed", "run_id"])
        for row, (y, hue) in enumerate(((GS, DI), (DI, GS))):
            (pts,) = collections(axes[row, col], "runs")
            np.testing.assert_array_equal(pts.get_offsets(), sub[["attn_rate", y]].to_numpy())
            np.testing.assert_array_equal(pts.get_array(), sub[hue].to_numpy())
            nc = sub[sub["phase"] == "non-circular"]
            marks = collections(axes[row, col], "non-circular")
            got = marks[0].get_offsets() if marks else np.empty((0, 2))
            np.testing.assert_array_equal(got, nc[["attn_rate", y]].to_numpy().reshape(-1, 2))


def test_ablations_figure_compares_each_setting_at_each_depth(full: pd.DataFrame) -> None:
    fig = pa.ablations_figure(full)
    titles = [ax.get_title() for ax in data_axes(fig) if ax.get_title()]
    t = full[full["family"] == "transformer"]
    want = []
    for n in (1, 2):
        for label, dv, es in (("no ablation", False, False), ("diff_vocab", True, False),
                              ("eqn_sign", False, True)):
            k = int(((t["n_layers"] == n) & (t["diff_vocab"] == dv) & (t["eqn_sign"] == es)).sum())
            want.append(f"{label}, {n} layer{'s' if n > 1 else ''}: {k} runs")
    assert titles == want
    # The data of one panel: eqn_sign at 2 layers, GS row.
    sub = t[(t["n_layers"] == 2) & t["eqn_sign"]]
    means = sub.groupby(["width", "attn_rate"])[GS].mean().reset_index()
    ax = next(a for a in data_axes(fig) if a.get_title().startswith("eqn_sign, 2 layers"))
    (pts,) = collections(ax, "runs")
    np.testing.assert_allclose(pts.get_array(), means[GS], rtol=1e-12)


def test_mlp_figure_bars_are_means_and_points_are_runs(full: pd.DataFrame) -> None:
    fig = pa.mlp_figure(full)
    m = full[full["family"] != "transformer"]
    order = ["A", "B", "C", "D", "X"]
    for ax, metric in zip(data_axes(fig), (GS, DI), strict=True):
        assert [t.get_text() for t in ax.get_xticklabels()] == order
        heights = [p.get_height() for p in ax.patches if p.get_gid() == "means"]
        np.testing.assert_allclose(heights, m.groupby("family")[metric].mean()[order],
                                   rtol=1e-12)
        (pts,) = collections(ax, "runs")
        want = m.assign(rank=m["family"].map(order.index)).sort_values(
            ["rank", "width", "seed", "run_id"])
        np.testing.assert_array_equal(pts.get_offsets()[:, 1], want[metric])
        # Every run sits within its own family's bar.
        x = pts.get_offsets()[:, 0]
        np.testing.assert_array_equal(np.round(x), want["rank"])
    assert f"{len(m)} runs" in fig.get_suptitle()


def test_figures_without_data_are_not_drawn(full: pd.DataFrame) -> None:
    def drawn(runs: pd.DataFrame) -> set[str]:
        return set(figure_recipes(runs, fig1_width=128, boundary=fit_main(runs, n_boot=0)))

    assert drawn(make_runs(legacy=True)) == {FIG1, FIG2}
    assert drawn(full) == set(FIGURES)
    deep_only = full[(full["n_layers"] == 2) & (full["family"] == "transformer")]
    assert drawn(deep_only) == {LAYERS, ABLATIONS}
    mlp_only = full[full["family"] != "transformer"]
    assert drawn(mlp_only) == {MLP}
    for draw in (pa.layers_figure, pa.ablations_figure):
        with pytest.raises(ValueError, match="no runs"):
            draw(mlp_only)
    with pytest.raises(ValueError, match="no attention-free runs"):
        pa.mlp_figure(deep_only)


def test_main_runs_leave_a_gelu_experiment_out_of_the_main_figures() -> None:
    from clockpizza.results.selection import main_runs

    relu = make_runs(seed=3)
    gelu = make_runs(seed=4).assign(act="gelu", run_id=lambda d: "g" + d["run_id"].str[1:])
    main = main_runs(pd.concat([relu, gelu], ignore_index=True))
    assert set(main["act"]) == {"relu"} and len(main) == len(relu)
    assert len(main_runs(gelu)) == len(gelu)  # a table of GeLU runs alone is still drawn
