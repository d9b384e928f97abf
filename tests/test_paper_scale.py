"""The shipped paper-length results: the tool that makes them (a dry run), and the report's
"Paper scale" section drawn from whatever results/ holds."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from fake_runs import make_runs

from clockpizza.figures.paper_scale import (
    PS_FIG1,
    PS_FIG2,
    paper_scale_context,
    paper_scale_recipes,
)
from clockpizza.figures.report import build_report
from clockpizza.io.params import parse_params
from clockpizza.io.table import DYNAMICS_SCHEMA, write_json, write_runs_table, write_table
from clockpizza.results.boundary import fit_main
from clockpizza.results.paper_compare import read_published_runs
from clockpizza.results.shipped import (
    combined_runs,
    live_against_shipped,
    paper_scale_summary,
    read_shipped,
    shipped_folders,
)
from clockpizza.tools import paper_scale

ROOT = Path(__file__).resolve().parents[1]
PARAMS = parse_params(yaml.safe_load((ROOT / "params.yaml").read_text()))
PUBLISHED = read_published_runs(ROOT / "paper/published_runs_fixed_width.csv")
TENTHS = [i / 10 for i in range(11)]  # the paper_cpu presets' attention rates


def ship(folder: Path, runs: pd.DataFrame) -> None:
    """A results folder as the tool writes it, from a constructed runs table."""
    runs = runs.assign(init_per_run=True, split_per_run=True, steps=20000)
    write_runs_table(folder / "runs.parquet", runs)
    write_table(folder / "dynamics.parquet", pd.DataFrame(columns=DYNAMICS_SCHEMA.names),
                DYNAMICS_SCHEMA)
    prov = runs[["run_id", "width", "seed", "attn_rate", "device", "engine", "precision",
                 "steps"]].assign(cpu="AMD EPYC", threads=2, chunk_wall_s=100.0 * runs["width"],
                                  chunk_models=11, resumed_from=0, commit="abc123" * 6,
                                  torch="2.13.0+cpu", trained_by="test")
    prov.to_parquet(folder / "provenance.parquet")
    write_json(folder / "meta.json", {"command": "python -m clockpizza.tools.paper_scale x",
                                      "widths_done": sorted(set(runs["width"]))})


def dry_run_args(tmp_path: Path) -> tuple[Path, list[str]]:
    """The tables' folder and the arguments of a dry run of paper_cpu_narrow with its weights
    apart (as a helper process shares them)."""
    out = tmp_path / "out"
    return out, ["--preset", "paper_cpu_narrow", "--out", str(out), "--runs",
                 str(tmp_path / "weights"), "--dry-run", "--params", str(ROOT / "params.yaml")]


def section(results: Path) -> tuple[dict, str]:
    """The summarise stage's paper_scale.json and the report's text, from a results folder."""
    shipped = [read_shipped(f, PARAMS.phase) for f in shipped_folders(results)]
    runs = combined_runs(shipped)
    summary = paper_scale_summary(shipped, runs, fit_main(runs, n_boot=0), PUBLISHED,
                                  PARAMS.phase)
    ctx = paper_scale_context(runs, json.loads(json.dumps(summary)), {})
    return summary, build_report(make_runs(), {}, 128, paper_scale=ctx)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    ship(root / "narrow", make_runs(alphas=TENTHS, widths=(32, 64), seeds=(0, 1), seed=3))
    ship(root / "w128", make_runs(alphas=TENTHS, widths=(128,), seeds=(0,), seed=4))
    (root / "mid_alpha").mkdir()
    (root / "mid_alpha" / "mid_alpha.csv").write_text("a,b\n")  # another kind: left alone
    return root


def test_every_shipped_folder_is_read_and_relabelled_by_the_rule_in_force(results: Path) -> None:
    folders = shipped_folders(results)
    assert [f.name for f in folders] == ["narrow", "w128"]
    shipped = [read_shipped(f, PARAMS.phase) for f in folders]
    runs = combined_runs(shipped)
    assert len(runs) == sum(len(pd.read_parquet(f / "runs.parquet")) for f in folders)
    assert set(runs["source"]) == {"narrow", "w128"}
    # a stricter pizza rule turns the low-GS pizzas into clocks, without retraining anything
    strict = PARAMS.phase.__class__(**{**PARAMS.phase.__dict__, "pizza_min_gs": 0.999})
    stricter = combined_runs([read_shipped(f, strict) for f in folders])
    assert (stricter["phase"] == "pizza").sum() < (runs["phase"] == "pizza").sum()


def test_a_half_written_results_folder_is_named(results: Path) -> None:
    (results / "w128" / "provenance.parquet").unlink()
    with pytest.raises(FileNotFoundError, match=r"w128: .*provenance\.parquet"):
        shipped_folders(results)


def test_the_section_compares_width_128_with_the_paper_and_says_what_made_it(
        results: Path) -> None:
    shipped = [read_shipped(f, PARAMS.phase) for f in shipped_folders(results)]
    runs = combined_runs(shipped)
    b = fit_main(runs, n_boot=20)
    summary = paper_scale_summary(shipped, runs, b, PUBLISHED, PARAMS.phase)
    # each batch (a width and seed: 100 s × width here) counted once, not once per run
    assert [s["train_hours"] for s in summary["sources"]] == [
        round(100 * (32 + 32 + 64 + 64) / 3600, 2), round(100 * 128 / 3600, 2)]
    assert summary["paper_tenths"]["compared"] == 10
    assert set(summary["transition_by_width"]) == {"32", "64", "128"}
    figures = paper_scale_recipes(runs, b, PUBLISHED)
    assert set(figures) == {PS_FIG1, PS_FIG2}
    paths = {stem: f"figures/{stem}.png" for stem in figures}
    # keys sorted, as write_json writes metrics/paper_scale.json
    ctx = paper_scale_context(runs, json.loads(json.dumps(summary, sort_keys=True)), paths)
    report = build_report(make_runs(), {}, 128, paper_scale=ctx)
    assert report.index("## Paper scale") < report.index("# Your run")
    assert f"{summary['paper_tenths']['within']} of 10 tenths match" in report
    expected = summary["paper_tenths"]["expected_within"]
    assert 0 < expected < 10  # what the paper's own runs would score, with these run counts
    assert f"would match {expected:.1f} of 10 tenths on average" in report
    p_few = summary["paper_tenths"]["p_within_or_fewer"]
    assert 0 < p_few <= 1
    assert f"or fewer with probability {p_few:.2f}" in report
    assert "(2 000 draws)" in report
    # the pizzas' DI rows in width order, the paper's last
    rows = [report.index(f"| ours, width {w} |") for w in (32, 64, 128)]
    assert rows == sorted(rows) < [report.index("| the paper, width 128 |")] * 3
    assert "| `results/w128` | 11 | 128 | 0 | 11 | 20 000 |" in report
    # every planted run was trained by a process other than the folder's command
    assert "(and 1 more process sharing its training, named in `results/narrow/README.md`)" \
        in report
    assert f"![paper-scale figure 2](figures/{PS_FIG2}.png)" in report
    assert " at width 128 (at width 128, 95 % band " in report  # fitted there, not read off


def test_without_shipped_results_the_section_says_how_to_make_them(tmp_path: Path) -> None:
    assert shipped_folders(tmp_path) == []
    ctx = paper_scale_context(combined_runs([]), paper_scale_summary([], combined_runs([]),
                                                                     None, PUBLISHED,
                                                                     PARAMS.phase), {})
    report = build_report(make_runs(), {}, 128, paper_scale=ctx)
    assert "No paper-length results are shipped" in report
    assert "--preset paper_cpu_narrow" in report


def test_the_tool_trains_width_by_width_resumes_and_records_provenance(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--preset", "paper_cpu_narrow", "--out", str(out), "--dry-run",
            "--params", str(ROOT / "params.yaml")]
    assert paper_scale.main(args) == 0
    runs = pd.read_parquet(out / "runs.parquet")
    prov = pd.read_parquet(out / "provenance.parquet")
    assert sorted(runs["width"].unique()) == [8, 16]  # the dry run's widths
    assert runs["init_per_run"].all() and runs["split_per_run"].all()  # the paper's protocol
    assert set(prov["run_id"]) == set(runs["run_id"])
    for col in ("device", "cpu", "engine", "precision", "chunk_wall_s", "commit", "torch"):
        assert prov[col].notna().all(), col
    meta = json.loads((out / "meta.json").read_text())
    assert meta["widths_done"] == [8, 16] and "--preset paper_cpu_narrow" in meta["command"]
    assert (out / ".gitignore").read_text() == "/runs/\n"
    before = (out / "runs.parquet").read_bytes()
    assert paper_scale.main(args) == 0  # a rerun reuses every run: the same table
    assert (out / "runs.parquet").read_bytes() == before
    assert pd.read_parquet(out / "provenance.parquet").equals(prov)


def test_the_tool_refuses_to_mix_two_grids_in_one_folder(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    base = ["--out", str(out), "--dry-run", "--params", str(ROOT / "params.yaml")]
    assert paper_scale.main(["--preset", "paper_cpu_narrow", *base]) == 0
    assert paper_scale.main(["--preset", "paper_cpu_narrow", *base,
                             "--set", "train.lr=0.002"]) == 2
    assert "params.yaml: made with other params" in capsys.readouterr().err
    assert paper_scale.main(["--preset", "nope", *base]) == 2
    assert "allowed: " in capsys.readouterr().err


def test_a_second_process_shares_the_work_and_its_runs_keep_their_provenance(
        tmp_path: Path) -> None:
    out, base = dry_run_args(tmp_path)
    assert paper_scale.main([*base, "--widths", "16", "--train-only"]) == 0
    assert not out.exists()  # a helper writes no table and no record of the folder
    assert paper_scale.main(base) == 0
    prov = pd.read_parquet(out / "provenance.parquet").set_index("run_id")
    by = prov["trained_by"]
    runs_16 = pd.read_parquet(out / "runs.parquet").query("width == 16")["run_id"]
    assert by.loc[runs_16].str.contains("--train-only").all()  # trained by the helper
    assert not by.drop(runs_16).str.contains("--train-only").any()
    assert "--train-only" not in (out / "command.txt").read_text()
    assert paper_scale.main([*base, "--widths", "32"]) == 2  # not a width of the dry run


def test_measure_only_writes_the_finished_widths_and_keeps_the_training_record(
        tmp_path: Path) -> None:
    out, base = dry_run_args(tmp_path)
    assert paper_scale.main([*base, "--widths", "8", "--train-only"]) == 0
    assert paper_scale.main([*base, "--measure-only"]) == 0  # width 16 not trained yet
    meta = json.loads((out / "meta.json").read_text())
    assert meta["widths_done"] == [8]
    assert sorted(pd.read_parquet(out / "runs.parquet")["width"].unique()) == [8]
    assert "in progress" in (out / "README.md").read_text()
    assert paper_scale.main(base) == 0  # trains width 16, reuses width 8
    assert "finished" in (out / "README.md").read_text().splitlines()[0]
    assert paper_scale.main([*base, "--measure-only"]) == 0
    assert "--measure-only" not in json.loads((out / "meta.json").read_text())["command"]


def test_the_section_renders_without_width_128(results: Path) -> None:
    # widths 32 and 64 shipped, 128 not yet: no tenths table, the rest drawn
    (results / "w128" / "runs.parquet").unlink()
    for f in ("dynamics.parquet", "provenance.parquet", "meta.json"):
        (results / "w128" / f).unlink()
    _, report = section(results)
    assert "## Paper scale" in report and "tenths match" not in report
    assert "; at width 128, " in report and ", extrapolated." in report  # read off the line
    assert "| `results/narrow` | 44 |" in report


def test_two_processes_split_one_group_by_attention_rate_and_by_seed(tmp_path: Path) -> None:
    # the dry run has one seed, so its (width, seed) groups can only be shared by α
    out, base = dry_run_args(tmp_path)
    assert paper_scale.main([*base, "--attn-rates", "0.0", "--train-only"]) == 0
    assert paper_scale.main([*base, "--measure-only"]) == 0  # the other rates still missing
    assert not (out / "runs.parquet").exists()
    assert paper_scale.main([*base, "--attn-rates", "0.5", "1.0", "--seeds", "0",
                             "--train-only"]) == 0
    assert paper_scale.main([*base, "--measure-only"]) == 0  # now every run is whole
    # the folder's record is the command that makes it whole, not the measuring one
    for record in (json.loads((out / "meta.json").read_text())["command"],
                   (out / "command.txt").read_text()):
        assert record.strip().endswith("--dry-run --params " + str(ROOT / "params.yaml")), record
    table = pd.read_parquet(out / "runs.parquet")
    assert sorted(table["width"].unique()) == [8, 16]
    assert sorted(table["attn_rate"].unique()) == [0.0, 0.5, 1.0]
    by = pd.read_parquet(out / "provenance.parquet").set_index("attn_rate")["trained_by"]
    assert by.loc[0.0].str.contains("--attn-rates 0.0 ").all()
    assert not by.loc[[0.5, 1.0]].str.contains("--attn-rates 0.0 ").any()
    readme = (out / "README.md").read_text()  # names both commands that trained its runs
    assert "- 2 runs of width 8, 16 in " in readme and "- 4 runs of width 8, 16 in " in readme
    assert "--attn-rates 0.0 --train-only`" in readme
    assert "--attn-rates 0.5 1.0 --seeds 0 --train-only`" in readme


def test_a_partial_share_is_refused_by_name_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    base = ["--preset", "paper_cpu_narrow", "--out", str(out), "--dry-run",
            "--params", str(ROOT / "params.yaml")]
    assert paper_scale.main([*base, "--attn-rates", "0.55", "--train-only"]) == 2
    assert "--attn-rates [0.55]: not attention rates of the preset; allowed: [0.0, 0.5, 1.0]" \
        in capsys.readouterr().err
    assert paper_scale.main([*base, "--seeds", "7", "--train-only"]) == 2
    assert "--seeds [7]: not seeds of the preset; allowed: [0]" in capsys.readouterr().err
    assert paper_scale.main([*base, "--seeds", "0"]) == 2  # a table writer must see whole widths
    assert "need --train-only" in capsys.readouterr().err
    assert not out.exists()


def test_a_folder_resumes_after_params_yaml_gains_a_section_training_never_reads(
        tmp_path: Path) -> None:
    out = tmp_path / "out"
    base = ["--preset", "paper_cpu_narrow", "--out", str(out), "--dry-run"]
    assert paper_scale.main([*base, "--params", str(ROOT / "params.yaml")]) == 0
    recorded = (out / "params.yaml").read_text()
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["neurons"]["min_r2"] = 0.5  # read by the neurons stage only
    edited = tmp_path / "params.yaml"
    edited.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert paper_scale.main([*base, "--params", str(edited)]) == 0
    assert (out / "params.yaml").read_text() == recorded  # the record of what ran is kept
    raw["train"]["lr"] = 0.002  # but a change training reads still refuses
    edited.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert paper_scale.main([*base, "--params", str(edited)]) == 2


def test_a_folder_made_before_flush_denormals_resumes_with_it_false_and_is_named_otherwise(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    base = ["--preset", "paper_cpu_narrow", "--out", str(out), "--dry-run",
            "--params", str(ROOT / "params.yaml")]
    assert paper_scale.main([*base, "--set", "train.flush_denormals=false"]) == 0
    recorded = yaml.safe_load((out / "params.yaml").read_text())
    del recorded["train"]["flush_denormals"]  # as the shipped folders were written
    (out / "params.yaml").write_text(yaml.safe_dump(recorded, sort_keys=False))
    capsys.readouterr()
    assert paper_scale.main(base) == 2  # today's default flushes: other runs
    assert "differ in train.flush_denormals" in capsys.readouterr().err
    assert paper_scale.main([*base, "--set", "train.flush_denormals=false"]) == 0


def test_the_section_follows_the_pizzas_di_over_training_and_counts_unlearned_runs(
        results: Path) -> None:
    narrow = results / "narrow"
    runs = pd.read_parquet(narrow / "runs.parquet")
    runs.loc[runs.index[:3], "test_acc"] = 0.5  # three runs that did not learn
    runs.to_parquet(narrow / "runs.parquet")
    # every run's DI climbs 0.2 -> 0.4 -> 0.8 over its snapshots; step 500 is before learning
    rows = [{**{c: 0.0 for c in DYNAMICS_SCHEMA.names}, "run_id": rid, "step": step,
             "distance_irrelevance": di, "phase": "pizza"}
            for rid in runs["run_id"] for step, di in ((500, 0.9), (1000, 0.2), (5000, 0.4),
                                                        (20000, 0.8))]
    write_table(narrow / "dynamics.parquet", pd.DataFrame(rows), DYNAMICS_SCHEMA)
    _, report = section(results)
    assert "| width | step 1 000 | step 5 000 | step 20 000 |" in report
    assert "| 32 | 0.200 | 0.400 | 0.800 |" in report and "| 64 | 0.200 | 0.400 | 0.800 |" in report
    over_training = report.split("over training")[1].split("Runs below")[0]
    assert "| 128 |" not in over_training  # the width-128 folder ships no snapshots
    unlearned = {32: 0, 64: 0}
    for w in runs.loc[runs.index[:3], "width"]:
        unlearned[int(w)] += 1
    assert (f"{unlearned[32]} of 22 at width 32; {unlearned[64]} of 22 at width 64; "
            "0 of 11 at width 128.") in report


def test_your_run_is_set_beside_the_shipped_runs_at_your_length_and_at_theirs(
        results: Path) -> None:
    narrow = results / "narrow"
    shipped_runs = pd.read_parquet(narrow / "runs.parquet")
    shipped_runs[["gradient_symmetricity", "distance_irrelevance"]] = [0.6, 0.9]  # the end
    shipped_runs.to_parquet(narrow / "runs.parquet")
    # snapshots at 3 000 and 5 000: 4 000 steps is as near to both, the later one is taken
    rows = [{**{c: 0.0 for c in DYNAMICS_SCHEMA.names}, "run_id": rid, "step": step,
             "gradient_symmetricity": gs, "distance_irrelevance": 0.5, "phase": "pizza"}
            for rid in shipped_runs["run_id"] for step, gs in ((3000, 0.1), (5000, 0.8))]
    write_table(narrow / "dynamics.parquet", pd.DataFrame(rows), DYNAMICS_SCHEMA)
    shipped = [read_shipped(f, PARAMS.phase) for f in shipped_folders(results)]
    # a shared-start grid at 4 000 steps, two of its α on the shipped tenths, one (0.45) not
    live = make_runs(alphas=[0.0, 0.45, 1.0], widths=(32, 64), seeds=(0, 1), steps=4000)
    live[["gradient_symmetricity", "distance_irrelevance"]] = [0.9, 0.5]
    yours = live_against_shipped(live, shipped)
    assert yours["snapshot"] == 5000 and yours["cells"] == 4 and not yours["same_protocol"]
    assert yours["mean_abs_near"] == {"gs": 0.1, "di": 0.0}
    assert yours["mean_abs_end"] == {"gs": 0.3, "di": 0.4}
    runs = combined_runs(shipped)
    summary = paper_scale_summary(shipped, runs, None, PUBLISHED, PARAMS.phase)
    ctx = paper_scale_context(runs, json.loads(json.dumps({**summary, "your_run": yours})), {})
    report = build_report(make_runs(), {}, 128, paper_scale=ctx)
    assert "At about your length the medians differ by 0.10 in GS and 0.00 in DI" in report
    assert "your shared start and split against each run its own weights and split" in report
    assert "| 64 | 1 | 2 | 0.900 / 0.500 | 0.800 / 0.500 | 0.600 / 0.900 (2) |" in report
    assert live_against_shipped(live.assign(attn_rate=0.45), shipped) == {}  # no shared cell
