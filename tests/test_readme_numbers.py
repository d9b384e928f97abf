"""The README's account of the shipped paper-length runs ("What they say") quotes numbers that
the summarise stage computed into the committed metrics/paper_scale.json and
metrics/summary.json; each quoted number is checked against them here, so the prose cannot
drift from the tables (rerun `dvc repro`, then fix the README where this fails)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def readme() -> str:
    return re.sub(r"\s+", " ", (ROOT / "README.md").read_text())  # line breaks as spaces


@pytest.fixture(scope="module")
def ps() -> dict:
    return json.loads((ROOT / "metrics/paper_scale.json").read_text())


def f2(x: float) -> str:
    return f"{x:.2f}"


def test_the_boundary_the_readme_quotes(readme: str, ps: dict) -> None:
    t, b = ps["transition_by_width"], ps["boundary"]
    assert (f"α* = {f2(t['32'])} at width 32, {f2(t['64'])} at width 64 and {f2(t['128'])} at "
            f"width 128 (95 % band {f2(b['transition_attn_rate_lo'])}–"
            f"{f2(b['transition_attn_rate_hi'])})") in readme
    assert f"{b['alpha_shift_per_doubling']:+.2f} α per doubling" in readme
    live = json.loads((ROOT / "metrics/summary.json").read_text())["boundary"]
    shift = f"{live['alpha_shift_per_doubling']:.2f}".replace("-", "−")
    assert f"The laptop default fits {shift} per doubling" in readme


def test_the_tenths_the_readme_quotes(readme: str, ps: dict) -> None:
    pt = ps["paper_tenths"]
    rows = {round(r["alpha_lo"], 1): r for r in pt["rows"]}
    assert f"{pt['within']} of {pt['compared']} tenths match the paper's medians" in readme
    assert f"Those chances sum to {pt['expected_within']:.1f} of {pt['compared']}" in readme
    assert (f"would match {pt['within']} or fewer tenths with probability "
            f"{pt['p_within_or_fewer']:.2f}") in readme
    # "GS within 0.005 in every tenth up to 0.6"
    assert "GS within 0.005 in every tenth up to 0.6" in readme
    assert max(abs(r["our_gs_median"] - r["paper_gs_median"])
               for a, r in rows.items() if a < 0.6) <= 0.005
    assert (f"(GS {f2(rows[0.7]['our_gs_median'])} and {f2(rows[0.8]['our_gs_median'])} "
            f"against the paper's medians of {f2(rows[0.7]['paper_gs_median'])} and "
            f"{f2(rows[0.8]['paper_gs_median'])})") in readme
    assert (f"(GS median {f2(rows[0.5]['paper_gs_median'])} in the 0.5–0.6 tenth, "
            f"{f2(rows[0.6]['paper_gs_median'])} in 0.6–0.7, "
            f"{f2(rows[0.7]['paper_gs_median'])} in 0.7–0.8)") in readme


def test_the_pizzas_di_the_readme_quotes(readme: str, ps: dict) -> None:
    pz, steps = ps["pizza_di"], ps["pizza_di_by_step"]

    def q(key: str) -> str:
        return f"{f2(pz[key]['q25'])}–{f2(pz[key]['q75'])}"

    assert (f"median {f2(pz['ours_w32']['median'])} (quartiles {q('ours_w32')}, "
            f"{pz['ours_w32']['n']} runs) at width 32, {f2(pz['ours_w64']['median'])} "
            f"({q('ours_w64')}, {pz['ours_w64']['n']} runs) at width 64 and "
            f"{f2(pz['ours_w128']['median'])} ({q('ours_w128')}, {pz['ours_w128']['n']} runs) "
            "at width 128") in readme
    assert f"{f2(pz['paper_w128']['median'])} ({q('paper_w128')})" in readme
    assert (f"({f2(steps['32']['1000'])} at step 1 000, {f2(steps['32']['20000'])} at 20 000)"
            in readme)
    for w in ("64", "128"):
        assert f"({f2(steps[w]['1000'])} → {f2(steps[w]['20000'])})" in readme


def test_the_unlearned_runs_and_the_shared_start_the_readme_quotes(readme: str,
                                                                  ps: dict) -> None:
    u = ps["unlearned_by_width"]
    assert f"{u['32']['below_min_test_acc']} of its {u['32']['runs']} runs stay below" in readme
    assert (f"{u['64']['below_min_test_acc']} of {u['64']['runs']} at width 64 and "
            f"{u['128']['below_min_test_acc']} of {u['128']['runs']} at width 128") in readme
    near, end = ps["your_run"]["mean_abs_near"], ps["your_run"]["mean_abs_end"]
    assert f"differ by {f2(near['gs'])} in GS and {f2(near['di'])} in DI on average" in readme
    assert f"they differ by {f2(end['gs'])} and {f2(end['di'])}" in readme
    hours = {s["name"]: s["train_hours"] for s in ps["sources"]}
    assert f"{hours['paper_cpu_narrow']:.1f} h of training" in readme
    assert f"{hours['paper_cpu_w128']:.1f} h of training" in readme
    cell = next(r for r in ps["your_run"]["rows"] if r["width"] == 64 and r["attn_rate"] == 1)
    paper = next(r for r in ps["paper_tenths"]["rows"] if round(r["alpha_lo"], 1) == 0.9)
    assert (f"{f2(cell['di'])} with the shared start, against {f2(cell['di_near'])} with the "
            f"paper's protocol at step 5 000 and {f2(cell['di_end'])} at the end (the paper: "
            f"{f2(paper['paper_di_median'])})") in readme


def test_the_largest_shared_start_gaps_the_readme_names_are_the_largest(readme: str,
                                                                       ps: dict) -> None:
    rows = ps["your_run"]["rows"]

    def largest(at: str) -> tuple[int, float, str]:
        _gap, cell = max((abs(r[m] - r[f"{m}_{at}"]), (r["width"], r["attn_rate"], m))
                         for r in rows for m in ("gs", "di"))
        return cell
    assert largest("near") == (64, 1.0, "di")  # "At step 5 000 the largest single gap ..."
    assert largest("end") == (32, 0.7, "gs")  # "At 20 000 steps it is width 32 at α = 0.7"
    cell = next(r for r in rows if r["width"] == 32 and r["attn_rate"] == 0.7)
    assert (f"GS ({f2(cell['gs'])} with the shared start at 4 000 steps, {f2(cell['gs_end'])} "
            "at the end)") in " ".join(readme.split())
