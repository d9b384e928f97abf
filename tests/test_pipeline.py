"""End-to-end: a real `dvc repro` on tiny params in a temporary copy of the repository."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from clockpizza.figures import plots
from clockpizza.figures.example_plots import example_figure
from clockpizza.figures.paper_scale import PS_FIG2
from clockpizza.figures.plots_neurons import NEURON_FIGURES
from clockpizza.figures.report import FIG2
from clockpizza.io.table import CIRCLES_SCHEMA, EXAMPLE_TABLES, NEURON_TABLES, RUNS_SCHEMA
from clockpizza.results.boundary import boundary_from_json, fit_main
from clockpizza.results.paper_compare import read_published_runs

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# Small enough for CI, large enough to see the phenomenon: at width 64 a pizza (α = 0) and a
# clock (α = 1) are told apart after 1000 steps (GS ≈ 0.99 vs ≈ 0.3-0.4 on this setup).
SCIENCE = {"attn_rate": [0.0, 1.0], "width": [64], "seed": [0], "steps": 1000}


def _env(repo: Path = REPO) -> dict[str, str]:
    # The stages of a copied repository import the copy's package, not this checkout's.
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PYTHONPATH=str(repo))
    env.pop("DVC_SITE_CACHE_DIR", None)
    return env


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, cwd=cwd, env=_env(cwd), capture_output=True, text=True)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}\n"
                             f"{res.stderr}")
    return res


def set_params(repo: Path, **changes: object) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        section, _, leaf = key.partition("__")
        if leaf:
            params[section][leaf] = value
        else:
            params[key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def copy_repo(dest: Path) -> Path:
    """The tracked files of this repository, in a fresh git repository with one commit."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    for f in files:
        if (REPO / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dest / f)
    for rel in ("report", "metrics/summary.json"):  # generated outputs are rebuilt here
        target = dest / rel
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    run(["git", "init", "-q"], dest)
    run([*git, "add", "-A"], dest)
    run([*git, "commit", "-qm", "copy"], dest)
    return dest


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = copy_repo(tmp_path_factory.mktemp("repo"))
    set_params(dest, attn_rate=SCIENCE["attn_rate"], width=SCIENCE["width"],
               seed=SCIENCE["seed"], train__steps=SCIENCE["steps"], train__eval_every=250)
    run(["dvc", "repro"], dest)
    return dest


def test_runs_table_has_the_schema_and_one_row_per_grid_point(repo: Path) -> None:
    table = pq.read_table(repo / "metrics/runs.parquet")
    assert table.schema.names == RUNS_SCHEMA.names
    assert [f.type for f in table.schema] == [f.type for f in RUNS_SCHEMA]
    runs = table.to_pandas()
    grid = {(a, w, s) for a in SCIENCE["attn_rate"] for w in SCIENCE["width"]
            for s in SCIENCE["seed"]}
    assert set(zip(runs.attn_rate, runs.width, runs.seed, strict=True)) == grid
    assert len(runs) == len(grid)
    assert runs.run_id.is_unique
    assert (runs.steps == SCIENCE["steps"]).all() and (runs.p == 59).all()
    assert set(runs.phase) <= {"pizza", "clock", "non-circular"}
    for row in runs.itertuples():
        run_dir = repo / "runs" / f"w{row.width}-s{row.seed}" / row.run_id
        config = json.loads((run_dir / "config.json").read_text())
        assert config["run_id"] == row.run_id and config["attn_rate"] == row.attn_rate
        assert (run_dir / "model.safetensors").is_file()
        history = pd.read_parquet(run_dir / "history.parquet")
        assert history.step.iloc[-1] == SCIENCE["steps"]
    summary = json.loads((repo / "metrics/summary.json").read_text())
    assert summary["runs"] == len(runs)


def test_pizza_at_low_attention_rate_clock_at_high(repo: Path) -> None:
    runs = pd.read_parquet(repo / "metrics/runs.parquet").set_index("attn_rate")
    assert (runs.test_acc > 0.95).all(), runs.test_acc
    gs, di = runs.gradient_symmetricity, runs.distance_irrelevance
    assert gs[0.0] > gs[1.0] + 0.2, gs
    assert di[0.0] < di[1.0], di


def test_same_params_give_a_bit_identical_runs_table(repo: Path) -> None:
    before = (repo / "metrics/runs.parquet").read_bytes()
    run(["dvc", "repro", "--force"], repo)
    assert (repo / "metrics/runs.parquet").read_bytes() == before


def test_figures_are_drawn_from_the_runs_table(repo: Path, tmp_path: Path) -> None:
    runs = pd.read_parquet(repo / "metrics/runs.parquet")
    figs = repo / "report/figures"
    for stem in ("fig1_fixed_width", "fig2_phase_diagram"):
        for ext in ("png", "svg"):
            assert (figs / f"{stem}.{ext}").stat().st_size > 1000
    # The committed PNG is exactly what the plotting function makes of the table ...
    params = yaml.safe_load((repo / "params.yaml").read_text())
    published = read_published_runs(repo / "paper/published_runs_fixed_width.csv")  # grey
    plots.save(plots.fixed_width(runs, params["render"]["fig1_width"], published),
               tmp_path / "f1")
    # figure 2 draws the boundary the summarise stage fitted, saved in metrics/boundary.json
    boundary = boundary_from_json(json.loads((repo / "metrics/boundary.json").read_text()))
    assert boundary == fit_main(runs, n_boot=params["boundary"]["n_boot"],
                                boot_seed=params["boundary"]["boot_seed"])
    plots.save(plots.phase_diagram(runs, boundary), tmp_path / "f2")
    assert (tmp_path / "f1.png").read_bytes() == (figs / "fig1_fixed_width.png").read_bytes()
    assert (tmp_path / "f2.svg").read_bytes() == (figs / "fig2_phase_diagram.svg").read_bytes()
    # ... and the points it draws are the table's values.
    fig = plots.fixed_width(runs, params["render"]["fig1_width"])
    ax_di = fig.axes[0]
    xy = ax_di.collections[0].get_offsets()
    want = runs.sort_values(plots.SORT)
    assert list(xy[:, 0]) == list(want.attn_rate)
    assert list(xy[:, 1]) == list(want.distance_irrelevance)
    report = (repo / "report/README.md").read_text()
    assert "figures/fig1_fixed_width.png" in report and "figures/fig2_phase_diagram.png" in report
    assert f"{runs.gradient_symmetricity[runs.attn_rate == 0].median():.3f}" in report


def test_circles_table_and_the_model_a_b_figures(repo: Path, tmp_path: Path) -> None:
    runs = pd.read_parquet(repo / "metrics/runs.parquet")
    table = pq.read_table(repo / "metrics/circles.parquet")
    assert table.schema.names == CIRCLES_SCHEMA.names
    circles = table.to_pandas()
    assert set(circles.run_id) <= set(runs.run_id)
    counts = circles.groupby("run_id").size().reindex(runs.run_id, fill_value=0)
    assert counts.tolist() == runs.n_circles.tolist()
    # The paper's FVE is 2ρ − 1: signed, at most 1, −1 for an unrelated template, −3 at worst.
    fves = circles[[f"fve_{t}{s}" for t in ("clock", "pizza", "acc") for s in ("", "_centred")]]
    assert fves.stack().between(-3, 1).all()
    # The science, on this small setup: the α = 1 model's largest circle is a clock circle,
    # explained better by Q_clock than by Q_pizza; the α = 0 model's correct logits depend on
    # a − b (low DI) and its gradients are symmetric.
    by_rate = runs.set_index("attn_rate")
    clock_id, pizza_id = by_rate.run_id[1.0], by_rate.run_id[0.0]
    top = circles[circles.run_id == clock_id].sort_values("var_share").iloc[-1]
    assert top.type == "clock" and top.fve_clock > top.fve_pizza, top
    assert by_rate.dominant_circle_type[1.0] == "clock"

    examples = {name: pd.read_parquet(repo / f"metrics/examples/{name}.parquet")
                for name in EXAMPLE_TABLES}
    chosen = dict(examples["correct_logits"].drop_duplicates("role")[["role", "run_id"]].values)
    assert chosen == {"clock": clock_id, "pizza": pizza_id}  # the default rule: α = 1 and 0
    assert len(examples["correct_logits"]) == 2 * 59 * 59
    figs = repo / "report/figures"
    # The authors' naming: Model A is the α = 0 pizza, Model B the α = 1 clock.
    for role, stem in (("pizza", "fig3_model_a_pizza"), ("clock", "fig3_model_b_clock")):
        fig = example_figure(role, examples["embedding"], examples["correct_logits"],
                             examples["attention"], circles,
                             runs.set_index("run_id").loc[chosen[role]])
        plots.save(fig, tmp_path / stem)
        assert (tmp_path / f"{stem}.png").read_bytes() == (figs / f"{stem}.png").read_bytes()
        emb = examples["embedding"][examples["embedding"].role == role]
        first = circles[circles.run_id == chosen[role]].sort_values("circle").iloc[0]
        xy = fig.axes[0].collections[0].get_offsets()
        assert list(xy[:, 0]) == emb[emb.pc == first.pc_a].sort_values("token").value.tolist()
    report = (repo / "report/README.md").read_text()
    for stem in ("fig3_model_a_pizza", "fig3_model_b_clock", "fig3_paper_model_a_pizza",
                 "fig3_paper_model_b_clock"):
        assert f"figures/{stem}.png" in report and (figs / f"{stem}.png").is_file()
    model_a = report[report.index("### Model A (pizza)"):report.index("### Model B (clock)")]
    model_b = report[report.index("### Model B (clock)"):]
    assert f"ours: `{pizza_id}`" in model_a and "`p99zdpze5l`" in model_a
    assert f"ours: `{clock_id}`" in model_b and "`l8k1hzciux`" in model_b


def test_neuron_tables_of_the_grid_and_of_the_authors_models(repo: Path) -> None:
    runs = pd.read_parquet(repo / "metrics/runs.parquet")
    tables = {}
    for prefix in ("", "paper_"):
        for name, schema in NEURON_TABLES.items():
            table = pq.read_table(repo / f"metrics/{prefix}{name}.parquet")
            assert table.schema.names == schema.names, (prefix, name)
            tables[prefix + name] = table.to_pandas()
    per_run = tables["neuron_runs"].set_index("run_id")
    assert sorted(per_run.index) == sorted(runs.run_id)  # one row per transformer run
    d_mlp = 4 * SCIENCE["width"][0]
    assert (tables["neurons"].groupby("run_id").size() == d_mlp).all()
    assert (per_run.n_neurons == d_mlp).all()
    # The authors' Model A (α = 0, a pizza) and Model B (α = 1, a clock) are both measured; the
    # simple neuron model describes Model A's first layer and its clusters are discs.
    paper = tables["paper_neuron_runs"].set_index("run_id")
    assert {"p99zdpze5l", "l8k1hzciux"} <= set(paper.index)
    assert paper.median_r2["p99zdpze5l"] > 0.9
    model_a = tables["paper_neuron_clusters"].query("run_id == 'p99zdpze5l'")
    assert len(model_a) and (model_a.verdict == "disc").all()
    report = (repo / "report/README.md").read_text()
    section = report[report.index("## Two stories or one?"):]
    assert "**Model A** (`p99zdpze5l`" in section and "**Model B** (`l8k1hzciux`" in section
    for stem in NEURON_FIGURES:
        assert (repo / f"report/figures/{stem}.png").is_file()


def test_rerun_is_a_no_op_and_growing_the_grid_trains_only_new_runs(repo: Path) -> None:
    again = run(["dvc", "repro"], repo)
    assert "Running stage" not in again.stdout
    before = (repo / "metrics/runs.parquet").read_bytes()
    set_params(repo, width=[*SCIENCE["width"], 8])
    grown = run(["dvc", "repro"], repo)
    n = len(SCIENCE["attn_rate"])
    assert f"[train] {n} trained, {n} reused" in grown.stdout  # the width-8 runs only
    assert json.loads((repo / "metrics/train.json").read_text())["trained"] == n
    runs = pd.read_parquet(repo / "metrics/runs.parquet")
    assert len(runs) == 2 * len(SCIENCE["attn_rate"])
    # The old runs' rows are unchanged by the growth.
    old = pd.read_parquet(pd.io.common.BytesIO(before))
    merged = old.merge(runs, on="run_id", suffixes=("", "_new"))
    assert len(merged) == len(old)
    assert (merged.gradient_symmetricity == merged.gradient_symmetricity_new).all()
    set_params(repo, width=SCIENCE["width"])
    run(["dvc", "repro"], repo)  # back to the original grid, from cache, for later tests


def test_a_boundary_or_phase_change_reruns_only_the_cheap_stages(repo: Path) -> None:
    # The boundary's bootstrap and the phase thresholds are read after measuring: changing
    # them measures no model again, ours or the authors' (the measured tables keep their bytes).
    original = (repo / "params.yaml").read_text()
    measured = (repo / "metrics/measured.parquet").read_bytes()
    try:
        set_params(repo, boundary__n_boot=7)
        out = run(["dvc", "repro"], repo).stdout
        ran = set(re.findall(r"Running stage '(\w+)'", out))
        assert ran == {"check", "summarise", "render"}, ran
        # and render draws again only what shows a bootstrap: the phase diagrams
        drawn = re.search(r"drawn: (.*) \(\d+ unchanged", out).group(1)
        assert set(drawn.split(", ")) <= {"none", FIG2, PS_FIG2}, drawn
        # (this tiny grid has too few runs of each phase for a boundary: nothing else changes)
        # A phase threshold: summarise relabels ours and the paper's side; render only reads;
        # mechanism reruns only if a label changed (it picks figure 3's runs by label).
        paper_measured = (repo / "metrics/paper_measured.parquet").read_bytes()
        set_params(repo, phase__pizza_min_gs=0.95)
        ran = set(re.findall(r"Running stage '(\w+)'", run(["dvc", "repro"], repo).stdout))
        assert {"summarise", "render"} <= ran <= {"check", "summarise", "mechanism", "render"}, ran
        assert (repo / "metrics/measured.parquet").read_bytes() == measured
        assert (repo / "metrics/paper_measured.parquet").read_bytes() == paper_measured
        phases = json.loads((repo / "metrics/published_phases.json").read_text())
        assert phases["thresholds"]["pizza_min_gs"] == 0.95
        report = (repo / "report/README.md").read_text()
        assert "pizza by GS ≥ 0.95 |" in report  # the report shows the rule now in force
    finally:
        (repo / "params.yaml").write_text(original)
        run(["dvc", "repro"], repo)  # back to the original params, for later tests


def test_a_damaged_run_is_reported_by_name(repo: Path) -> None:
    runs = pd.read_parquet(repo / "metrics/runs.parquet")
    row = runs.iloc[0]
    weights = repo / "runs" / f"w{row.width}-s{row.seed}" / row.run_id / "model.safetensors"
    data = weights.read_bytes()
    try:
        weights.unlink()
        weights.write_bytes(data[: len(data) // 2])
        res = run([sys.executable, "stages/metrics.py"], repo, check=False)
        assert res.returncode != 0
        assert str(weights.relative_to(repo)) in res.stderr
    finally:
        run(["dvc", "checkout", "--force"], repo)
    assert weights.read_bytes() == data  # the result is recoverable from the DVC cache


def test_bad_params_are_refused_before_training_and_results_stay_recoverable(
        repo: Path) -> None:
    original = (repo / "params.yaml").read_text()
    try:
        set_params(repo, attn_rate=[0.0, 1.5])
        res = run(["dvc", "repro"], repo, check=False)
        assert res.returncode != 0
        assert "attn_rate[1] = 1.5" in res.stderr and "[0.0, 1.0]" in res.stderr
        assert "model-step" not in res.stderr  # no training started
    finally:
        (repo / "params.yaml").write_text(original)
    run(["dvc", "checkout", "--force"], repo)
    status = run(["dvc", "status"], repo).stdout
    assert "train" not in status and "dataset" not in status, status  # trained runs are back


def test_exp_run_with_a_scalar_and_a_list_of_attention_rates(repo: Path) -> None:
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "repro"], repo)
    set_params(repo, train__steps=20)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "short"], repo)
    run(["dvc", "exp", "run", "-S", "attn_rate=0.3"], repo)
    runs = pd.read_parquet(repo / "metrics/runs.parquet")
    assert list(runs.attn_rate) == [0.3]
    run(["dvc", "exp", "run", "-S", "attn_rate=[0,0.5,1]"], repo)
    runs = pd.read_parquet(repo / "metrics/runs.parquet")
    assert sorted(runs.attn_rate) == [0.0, 0.5, 1.0]
    shown = run(["dvc", "exp", "show", "--csv"], repo).stdout
    assert "attn_rate" in shown and "gs_median" in shown


def _outputs(repo: Path) -> dict[str, bytes]:
    return {str(p.relative_to(repo)): p.read_bytes()
            for d in ("data", "runs", "metrics", "report") for p in sorted((repo / d).rglob("*"))
            if p.is_file()}


# (change, what the refusal must name). A misspelt key inside an existing section is refused by
# DVC itself (`-S` cannot override a key that does not exist); the rest by the check stage.
@pytest.mark.parametrize("change, named", [
    ("attn_rate=[0,1.5]", "attn_rate[1] = 1.5"), ("+unknown_key=1", "unknown_key"),
    ("train.stpes=5", "train.stpes"), ("+train.stpes=5", "train.stpes"), ("data.p=60", "data.p")])
def test_a_refused_exp_run_leaves_every_output_in_place(repo: Path, change: str,
                                                        named: str) -> None:
    stderr = _refused_exp_run(repo, change)
    assert named in stderr, stderr


def _refused_exp_run(repo: Path, *changes: str) -> str:
    """Run ``dvc exp run -S change...`` on the committed results, assert that it fails before
    any training and leaves every output bit for bit, and return its stderr."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    run([*git, "add", "-A"], repo)
    run([*git, "commit", "-qm", "results", "--allow-empty"], repo)
    before = _outputs(repo)
    original = (repo / "params.yaml").read_text()
    try:
        res = run(["dvc", "exp", "run", *[a for c in changes for a in ("-S", c)]], repo,
                  check=False)
        assert res.returncode != 0, res.stdout
        assert "model-step" not in res.stderr  # refused before any training
    finally:
        (repo / "params.yaml").write_text(original)
    assert _outputs(repo) == before  # every output still there, bit for bit
    return res.stderr


def _ray_refusal() -> tuple[tuple[str, ...], str]:
    import importlib.util
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once it is closed
    named = "nothing answers" if importlib.util.find_spec("ray") else "Ray is not installed"
    return ("train.backend=ray", f"train.ray_address=127.0.0.1:{port}"), named


# What a later stage (train, metrics, mechanism) would refuse only after DVC had removed outputs,
# or only on this machine, refused by the check stage: (the -S changes, what the refusal names).
@pytest.mark.parametrize("changes, named", [
    (("train.device=cuda",), "train.device = 'cuda'"),
    _ray_refusal(),
    (("render.clock_run_id=0123456789ab",), "render.clock_run_id"),
    (("seed=[18446744073709551617]",), "seed[0] = 18446744073709551617"),
    (("data.p=3",), "metrics.gs_triples"),
    (("data.p=4001",), "GiB"),  # a model alone beyond the memory the trainer plans with
    (("train.steps=1000.0",), "write 1000"),  # equal to 1000 as a value: DVC saw no change
    (("train.snapshots=[0,10,5000]",), "train.snapshots[2] = 5000"),
], ids=["cuda", "ray-address", "example-run", "seed-range", "p-too-small", "memory",
        "float-steps", "snapshot-beyond"])
def test_a_refusal_only_a_later_stage_or_this_machine_knows_leaves_every_output_in_place(
        repo: Path, changes: tuple[str, ...], named: str) -> None:
    import torch

    if "cuda" in changes[0] and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    stderr = _refused_exp_run(repo, *changes)
    assert named in stderr and "[check] error in params.yaml" in stderr, stderr
    assert "Traceback" not in stderr
