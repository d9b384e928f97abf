"""The report and the summary metrics say what the table says: every drawn figure, the key numbers
(computed here independently), the boundary block in plain JSON, identical bytes on a rerun."""

from __future__ import annotations

import json
import re
import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from fake_runs import is_main, make_runs, planted_alpha_star
from test_example_plots import tables as example_tables

from clockpizza.figures.report import FIGURES, PRODUCE, build_report, load_timing
from clockpizza.io.params import parse_params
from clockpizza.io.table import (
    CIRCLES_SCHEMA,
    EXAMPLE_TABLES,
    write_json,
    write_runs_table,
    write_table,
)
from clockpizza.results.boundary import SUMMARY_KEYS, boundary_to_json, fit_boundary, fit_main
from clockpizza.results.phases import summarize

ROOT = Path(__file__).resolve().parents[1]
GS, DI = "gradient_symmetricity", "distance_irrelevance"
FINE = tuple(np.round(np.arange(0.0, 1.0001, 0.1), 2))
BLOCK_KEYS = {*SUMMARY_KEYS, "width", "extrapolated", "alpha_shift_per_doubling"}



@pytest.fixture(scope="module")
def full() -> pd.DataFrame:
    return make_runs(alphas=FINE, widths=(32, 64, 128), seeds=(0, 1), layers=(1, 2),
                     ablations=((False, False), (True, False)), mlp=("A", "C", "X"),
                     non_circular=0.05, device="cuda:NVIDIA H100", seed=1)


def summary(runs: pd.DataFrame, width: int = 128, n_boot: int = 50) -> dict[str, object]:
    return summarize(runs, boundary_width=width, boundary=fit_main(runs, n_boot=n_boot))


# --------------------------------------------------------------------------------------------
# summary.json: the boundary block.


def test_summary_boundary_block_is_the_fit_of_the_main_runs(full: pd.DataFrame) -> None:
    s = summary(full)
    text = json.dumps(s, allow_nan=False)  # no NaN reaches the metrics file
    block = json.loads(text)["boundary"]
    assert set(block) == BLOCK_KEYS
    b = fit_boundary(full[is_main(full)], n_boot=50, seed=0)
    assert b is not None
    assert block["transition_attn_rate"] == round(b.transition_attn_rate(128), 6)
    assert abs(block["transition_attn_rate"] - planted_alpha_star(128)) < 0.02
    assert block["transition_attn_rate_lo"] <= block["transition_attn_rate"] \
        <= block["transition_attn_rate_hi"]
    assert block["intercept"] == round(b.intercept, 6)
    assert block["n_runs"] == int((full[is_main(full)]["phase"] != "non-circular").sum())
    assert block["width"] == 128 and block["extrapolated"] is False
    assert block["alpha_shift_per_doubling"] == pytest.approx(0.2, abs=0.02)  # planted: 0.2


def test_summary_reads_the_boundary_at_exactly_the_configured_width(full: pd.DataFrame) -> None:
    block = summary(full, width=512)["boundary"]
    assert block["width"] == 512 and block["extrapolated"] is True
    b = fit_boundary(full[is_main(full)], n_boot=50, seed=0)
    assert b is not None
    assert block["transition_attn_rate"] == round(b.transition_attn_rate(512), 6)


def test_summary_boundary_ignores_deeper_ablated_and_attention_free_runs(
        full: pd.DataFrame) -> None:
    main = full[is_main(full)]
    assert summary(full)["boundary"] == summary(main)["boundary"]
    assert summary(main.drop(columns=["family", "diff_vocab", "eqn_sign"]))["boundary"] == \
        summary(main)["boundary"]


@pytest.mark.parametrize("case", ["one phase", "one attention rate", "no main runs"])
def test_summary_without_a_boundary_is_null_not_a_crash(full: pd.DataFrame, case: str) -> None:
    runs = {"one phase": full.assign(phase="clock"),
            "one attention rate": full[full["attn_rate"].isna() | (full["attn_rate"] == 0.5)],
            "no main runs": full[full["n_layers"] == 2]}[case]
    block = json.loads(json.dumps(summary(runs), allow_nan=False))["boundary"]
    assert block == {**dict.fromkeys(BLOCK_KEYS), "width": 128}


def test_summary_with_one_width_has_no_width_slope() -> None:
    runs = make_runs(alphas=FINE, widths=(128,), seeds=(0, 1, 2))
    block = summary(runs)["boundary"]
    assert block["coef_log2_width"] == 0.0 and block["alpha_shift_per_doubling"] is None
    assert block["extrapolated"] is False
    assert summary(runs, width=64)["boundary"]["extrapolated"] is True


# --------------------------------------------------------------------------------------------
# The report.


def figure_paths(stems: list[str]) -> dict[str, str]:
    return {s: f"figures/{s}.png" for s in stems}


def test_report_embeds_every_drawn_figure_and_names_the_command_for_the_rest() -> None:
    runs = make_runs(legacy=True)
    drawn = ["fig1_fixed_width", "fig2_phase_diagram"]
    report = build_report(runs, figure_paths(drawn), 128, boundary=fit_main(runs, n_boot=20))
    for stem in FIGURES:
        if stem in drawn:
            assert f"](figures/{stem}.png)" in report
        else:
            assert f"figures/{stem}.png" not in report
            assert f"`{PRODUCE[stem]}`" in report
    assert report.count("*Not drawn") == len(FIGURES) - len(drawn)


def test_report_key_numbers_come_from_the_table(full: pd.DataFrame) -> None:
    report = build_report(full, figure_paths(list(FIGURES)), 128,
                          boundary=fit_main(full, n_boot=50))
    main = full[is_main(full)]
    for alpha in (0.0, 1.0):
        at = main[main["attn_rate"] == alpha]
        assert (f"α = {alpha:g}: median GS {at[GS].median():.3f}, median DI "
                f"{at[DI].median():.3f} ({len(at)} runs)") in report
    assert f"- {len(full)} runs: {len(main)} one-layer transformers" in report
    assert "3 attention-free models" not in report  # 3 models × 2 seeds = 6 runs
    assert "6 attention-free models" in report
    b = fit_boundary(main, n_boot=50, seed=0)
    assert b is not None
    lo, hi = b.band(np.array([32.0, 64.0, 128.0]))
    for w, lo_w, hi_w in zip((32, 64, 128), lo, hi, strict=True):
        assert f"| {w} | {b.transition_attn_rate(w):.3f} | {lo_w:.3f}–{hi_w:.3f} |" in report
    assert f"on the {b.n_runs} circular runs" in report
    # Appendix tables: per-depth medians and per-model means.
    two = full[(full["n_layers"] == 2) & ~full["diff_vocab"]]
    top = two[two["attn_rate"] == 1.0]
    assert f"| 2 layers | {len(two)} | 0–1 |" in report
    assert f"{top[GS].median():.3f} | {top[DI].median():.3f} |" in report
    m = full[full["family"] == "C"]
    assert f"| C | 256 | {len(m)} | {m[GS].mean():.3f} | {m[DI].mean():.3f} |" in report
    # Every grid point of figure 2, with its phase counts.
    g = main[(main["width"] == 64) & (main["attn_rate"] == 0.3)]
    assert (f"| 64 | 0.3 | {len(g)} | {g[GS].mean():.3f} | {g[DI].mean():.3f} | "
            f"{g['circularity'].mean():.3f} |") in report
    # Hardware from the device column; the training length against the paper's.
    assert f"{len(full)} runs on `cuda:NVIDIA H100`" in report
    assert "2 000 full-batch AdamW steps per model (paper: 20 000)" in report
    assert "**Training length.** 2 000 steps" in report
    assert "α* = " + f"{b.transition_attn_rate(128):.3f}" in report


def test_report_without_a_boundary_or_main_runs_says_so(full: pd.DataFrame) -> None:
    report = build_report(full.assign(phase="pizza"), figure_paths(list(FIGURES)), 128,
                          boundary=fit_main(full.assign(phase="pizza")))
    assert "No boundary fitted: the circular runs are" in report
    assert "None could be fitted" in report
    deep = full[full["n_layers"] == 2]
    report = build_report(deep, figure_paths(["appendix_layers", "appendix_ablations"]), 128,
                          boundary=fit_main(deep))
    assert "fig1_fixed_width.png" not in report and PRODUCE["fig1_fixed_width"] in report
    assert "### The fitted phase boundary" not in report


def test_report_lists_the_runs_that_diverged(full: pd.DataFrame) -> None:
    assert "diverged**" not in build_report(full, figure_paths(list(FIGURES)), 128,
                                            boundary=fit_main(full))
    bad = full.index[:2]
    runs = full.copy()
    runs.loc[bad, ["diverged", "diverged_step", "phase"]] = [True, 30, "non-circular"]
    report = build_report(runs, figure_paths(list(FIGURES)), 128, boundary=fit_main(runs))
    assert "**2 runs diverged**" in report
    for r in runs.loc[bad].itertuples():
        assert f"`{r.run_id}` (transformer, width {r.width}, seed {r.seed}" in report
    assert report.count("from step 30") == 2


def test_report_is_deterministic_and_dateless(full: pd.DataFrame) -> None:
    args = (full, figure_paths(list(FIGURES)), 128)
    b20 = fit_main(full, n_boot=20)
    a, b = build_report(*args, boundary=b20), build_report(*args, boundary=b20)
    assert a == b
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", a)
    assert "nan" not in a.lower().replace("nanoGPT".lower(), "")


def test_report_states_the_wall_time_when_recorded(tmp_path: Path) -> None:
    runs = make_runs(legacy=True)
    assert load_timing(tmp_path / "timing.json") is None
    path = tmp_path / "timing.json"
    path.write_text(json.dumps({"total_wall_s": 754.0, "groups": [
        {"group": "w64-s0", "wall_s": 400.0, "n_models": 6, "steps": 2000, "device": "cpu"},
        {"group": "w32-s0", "wall_s": 354.0}]}))
    timing = load_timing(path)
    report = build_report(runs, figure_paths([]), 128, boundary=fit_main(runs, n_boot=0),
                          timing=timing)
    assert "12.6 min in total" in report
    assert report.index("`w32-s0`: 5.9 min") < report.index("`w64-s0`: 6.7 min (n_models 6")
    assert "metrics/timing.json` is absent" in build_report(runs, {}, 128)
    path.write_text(json.dumps({"groups": []}))
    with pytest.raises(ValueError, match="total_wall_s"):
        load_timing(path)


# --------------------------------------------------------------------------------------------
# The render stage, in process, on a constructed table.


def test_render_stage_draws_what_has_data_and_is_byte_stable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["boundary"]["n_boot"] = 20
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    runs = make_runs(non_circular=0.1, seed=2)
    write_runs_table(tmp_path / "metrics/runs.parquet", runs)
    write_json(tmp_path / "metrics/boundary.json", boundary_to_json(fit_main(runs, n_boot=20)))
    # The mechanism stage's tables: constructed examples standing for an α = 1 and an α = 0 run.
    examples: dict[str, list[pd.DataFrame]] = {}
    for role, alpha in (("clock", 1.0), ("pizza", 0.0)):
        run_id = runs.loc[runs.attn_rate == alpha, "run_id"].iloc[0]
        for name, df in example_tables(role).items():
            if isinstance(df, pd.DataFrame):
                examples.setdefault(name, []).append(df.assign(run_id=run_id))
    for name, schema in EXAMPLE_TABLES.items():
        write_table(tmp_path / f"metrics/examples/{name}.parquet",
                    pd.concat(examples[name], ignore_index=True), schema)
    write_table(tmp_path / "metrics/circles.parquet", pd.concat(examples["circles"]),
                CIRCLES_SCHEMA)
    figures = tmp_path / "report/figures"
    figures.mkdir(parents=True)
    (figures / "appendix_layers.png").write_bytes(b"stale")  # from an earlier, deeper grid
    monkeypatch.chdir(tmp_path)
    stage_main = runpy.run_path(str(ROOT / "stages/render.py"))["main"]

    def render() -> dict[str, bytes]:
        stage_main()
        out = {p.name: p.read_bytes() for p in sorted(figures.iterdir())}
        out["README.md"] = (tmp_path / "report/README.md").read_bytes()
        return out

    first = render()
    assert set(first) == {"fig1_fixed_width.png", "fig1_fixed_width.svg",
                          "fig2_phase_diagram.png", "fig2_phase_diagram.svg",
                          "fig3_model_a_pizza.png", "fig3_model_a_pizza.svg",
                          "fig3_model_b_clock.png", "fig3_model_b_clock.svg", "README.md"}
    report = first["README.md"].decode()
    assert "](figures/fig1_fixed_width.png)" in report
    assert "](figures/fig2_phase_diagram.png)" in report
    assert "*Not drawn" in report
    assert render() == first  # PNG, SVG and report: identical bytes (the figures from the cache)
    monkeypatch.setenv("CLOCKPIZZA_FIGURE_CACHE", "off")
    assert render() == first  # and as every figure drawn afresh


def test_every_command_the_report_suggests_sets_existing_params_keys() -> None:
    # Each `-S key=value` of a "Not drawn" hint, applied to params.yaml, passes the params check.
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    for stem, command in PRODUCE.items():
        pairs = re.findall(r"-S '([^=']+)=([^']*)'", command)
        assert pairs, stem
        raw = json.loads(json.dumps(base))
        for key, value in pairs:
            node = raw
            *parents, last = key.split(".")
            for part in parents:
                node = node[part]
            assert last in node, f"{stem}: {key} is not a key of params.yaml"
            node[last] = yaml.safe_load(value)
        parse_params(raw)  # raises ParamsError naming the key if the value is refused
