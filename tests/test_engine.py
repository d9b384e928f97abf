"""The training engine: resume after a kill, chunking, host syncs, determinism, the benchmark."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch

from clockpizza.analysis.collect import collect_tables
from clockpizza.io.params import load_params
from clockpizza.science.data import make_dataset
from clockpizza.science.grid import train_and_save
from clockpizza.science.model import TransformerConfig
from clockpizza.science.spec import RunSpec
from clockpizza.science.train import SplitTensors, plan_chunks, train_group
from clockpizza.tools import bench

REPO = Path(__file__).resolve().parents[1]
P = 59




@pytest.fixture(scope="module")
def data() -> SplitTensors:
    return SplitTensors.from_table(make_dataset(P, 0.8, 0), P, torch.device("cpu"))


def specs(n: int = 3, steps: int = 40, width: int = 8) -> list[RunSpec]:
    base = RunSpec(attn_rate=0.0, d_model=width, n_layers=1, n_heads=4, act="relu", p=P,
                   train_frac=0.8, split_seed=0, init_seed=0, steps=steps, lr=1e-3,
                   weight_decay=2.0, beta1=0.9, beta2=0.98, eps=1e-8, warmup_steps=10,
                   precision="fp32")
    return [dataclasses.replace(base, attn_rate=i / max(n - 1, 1)) for i in range(n)]


class Killed(Exception):
    pass


def kill_at(step: int):
    def progress(s: int) -> None:
        if s == step:
            raise Killed

    return progress


def test_a_killed_group_resumes_from_its_checkpoint_bit_for_bit(
        data: SplitTensors, tmp_path: Path) -> None:
    ckpt = tmp_path / "group.pt"
    whole = train_group(specs(), data, torch.device("cpu"), eval_every=10)
    with pytest.raises(Killed):
        train_group(specs(), data, torch.device("cpu"), eval_every=10, checkpoint=ckpt,
                    checkpoint_seconds=0, on_progress=kill_at(30))
    assert ckpt.exists()
    resumed = train_group(specs(), data, torch.device("cpu"), eval_every=10, checkpoint=ckpt,
                          checkpoint_seconds=0)
    assert resumed.resumed_from == 30
    for name, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    for a, b in zip(whole.history, resumed.history, strict=True):
        assert a.equals(b)


def test_a_torn_or_foreign_checkpoint_is_never_used(data: SplitTensors, tmp_path: Path) -> None:
    fresh = train_group(specs(steps=20), data, torch.device("cpu"), eval_every=10)
    torn = tmp_path / "torn.pt"
    torn.write_bytes(b"PK\x03\x04 not a whole checkpoint")
    with pytest.warns(UserWarning, match="unusable checkpoint"):
        again = train_group(specs(steps=20), data, torch.device("cpu"), eval_every=10,
                            checkpoint=torn)
    assert again.resumed_from == 0
    # A checkpoint of other runs (another attention-rate list) restarts from scratch.
    other = tmp_path / "other.pt"
    train_group(specs(n=2, steps=20), data, torch.device("cpu"), eval_every=10, checkpoint=other)
    mine = train_group(specs(steps=20), data, torch.device("cpu"), eval_every=10,
                       checkpoint=other)
    assert mine.resumed_from == 0
    for res in (again, mine):
        for name, value in fresh.model.state_dict().items():
            assert torch.equal(value, res.model.state_dict()[name]), name


def test_training_is_bit_identical_on_cpu(data: SplitTensors) -> None:
    a = train_group(specs(steps=20), data, torch.device("cpu"), eval_every=5)
    b = train_group(specs(steps=20), data, torch.device("cpu"), eval_every=5)
    for name, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[name]), name


def test_our_code_reads_nothing_back_to_the_host_inside_the_step_loop(
        data: SplitTensors, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every tensor-to-host read made from clockpizza's own code is counted. (AdamW reads its
    # CPU-resident step counter, which costs no device sync; that is torch's, not counted.)
    calls = {"n": 0}
    package = str(REPO / "clockpizza")
    for method in ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__"):
        original = getattr(torch.Tensor, method)

        def counted(self: torch.Tensor, *a: object, _orig=original, **k: object) -> object:
            if sys._getframe(1).f_code.co_filename.startswith(package):
                calls["n"] += 1
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, method, counted)
    counts = []
    for steps in (10, 60):
        calls["n"] = 0
        train_group(specs(steps=steps), data, torch.device("cpu"), eval_every=10_000)
        counts.append(calls["n"])
    assert counts[0] == counts[1], f"host reads grew with steps: {counts}"


def test_chunks_cover_every_model_once_within_the_cap() -> None:
    cfg = TransformerConfig(d_vocab=59, n_ctx=2, d_model=128, n_heads=4, n_layers=1)
    for n, cap in ((10, 3), (7, 7), (5, 0), (1, 2)):
        chunks = plan_chunks(n, cfg, 2785, torch.device("cpu"), cap)
        assert sorted(i for c in chunks for i in c) == list(range(n))
        assert all(0 < len(c) <= (cap or n) for c in chunks)
    # A group that cannot fit in memory at once is split automatically.
    huge = TransformerConfig(d_vocab=59, n_ctx=2, d_model=4096, n_heads=4, n_layers=4)
    assert len(plan_chunks(64, huge, 2785, torch.device("cpu"))) > 1


def test_a_group_in_chunks_gives_the_runs_of_one_batch(tmp_path: Path) -> None:
    params = load_params(REPO / "params.yaml")
    params = dataclasses.replace(
        params, attn_rate=(0.0, 0.25, 0.5, 0.75, 1.0), width=(8,), seed=(0,),
        train=dataclasses.replace(params.train, steps=20, eval_every=10, device="cpu"))
    dataset = make_dataset(P, 0.8, 0)
    tables = {}
    for cap in (0, 2):
        p = dataclasses.replace(params, train=dataclasses.replace(params.train, max_models=cap))
        root = tmp_path / f"cap{cap}"
        train_and_save(p, 8, 0, dataset, root / "runs", checkpoints=root / "ckpt")
        assert not list((root / "ckpt").glob("*")), "checkpoints are removed when done"
        tables[cap] = collect_tables(p, root / "runs", dataset, torch.device("cpu")).runs
    a, b = tables[0], tables[2]
    assert list(a.run_id) == list(b.run_id)
    for col in ("train_loss", "test_loss", "gradient_symmetricity", "distance_irrelevance"):
        assert (a[col] - b[col]).abs().max() < 1e-5, col


def test_flop_count_matches_a_hand_count() -> None:
    cfg = TransformerConfig(d_vocab=5, n_ctx=2, d_model=4, n_heads=2, n_layers=1)
    # K and V at both positions: 2·2·16; Q and O at the last: 2·16; MLP: 4·16 in, 4·16 out;
    # unembed: 4·5.
    assert bench.forward_macs_per_example(cfg) == 64 + 32 + 128 + 20
    two = dataclasses.replace(cfg, n_layers=2)
    # A full first block: Q, K, V, O and the MLP at both positions: 2·(4·16 + 128).
    assert bench.forward_macs_per_example(two) == 2 * (64 + 128) + 244
    assert bench.train_flops_per_model_step(cfg, 10) == 6 * 244 * 10


def test_benchmark_prints_one_json_line_and_updates_its_table(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench, "peak_matmul_tflops", lambda *a, **k: 1.0)
    report = tmp_path / "benchmarks.md"
    args = ["--width", "8", "--n-models", "2", "--steps", "3", "--warmup", "1",
            "--reference-steps", "2",
            "--device", "cpu", "--repeats", "2", "--json", "--report", str(report)]
    bench.main(args)
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"device", "d_model", "n_models", "steps", "model_steps_per_s",
            "reference_model_steps_per_s", "speedup_vs_reference", "achieved_tflops",
            "peak_matmul_tflops", "mfu"} <= set(out)
    assert out["device"] == "cpu" and out["d_model"] == 8 and out["n_models"] == 2
    assert out["model_steps_per_s"] > 0 and out["reference_model_steps_per_s"] > 0
    assert out["mfu"] == pytest.approx(out["achieved_tflops"] / 1.0, rel=1e-3)
    assert out["repeats"] == 2 and out["threads"] >= 1 and "load_before" in out
    lo, hi = out["model_steps_per_s_range"]
    assert lo <= out["model_steps_per_s"] <= hi, "the median lies within the reported range"
    bench.main(args)
    bench.main(["--width", "12", *args[2:]])
    rows = [ln for ln in report.read_text().splitlines() if ln.startswith("| cpu")]
    assert len(rows) == 2, "a repeated measurement replaces its row; a new width adds one"
    assert "| cpu | 8 |" in rows[0] and "| cpu | 12 |" in rows[1]


def test_benchmark_refuses_a_width_that_does_not_split_into_heads() -> None:
    with pytest.raises(SystemExit):
        bench.main(["--width", "30", "--no-report"])
    with pytest.raises(SystemExit):
        bench.main(["--steps", "5", "--warmup", "5", "--no-report"])
    with pytest.raises(SystemExit):
        bench.main(["--width", "8", "12", "--n-models", "1", "2", "3", "--no-report"])


def test_the_benchmark_times_the_steps_not_the_set_up(
        data: SplitTensors, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from clockpizza.science import train

    init = train.init_model

    def slow_init(*a: object, **k: object) -> object:
        time.sleep(3.0)
        return init(*a, **k)

    monkeypatch.setattr(train, "init_model", slow_init)
    started = time.perf_counter()
    seconds = bench.timed_group(specs(2, steps=4), data, torch.device("cpu"), warmup=1)
    assert time.perf_counter() - started > 3.0, "the slow set-up ran"
    assert 0 < seconds < 3.0, "three steps timed, the set-up not"


def test_a_split_per_run_trains_each_model_as_if_alone_on_its_own_split() -> None:
    # Two runs with their own split (and their own initial weights) trained as one batch end as
    # each would trained alone on a dataset table holding its split: the masked loss is the
    # per-model mean over that model's pairs, nothing leaks between models.
    own = [dataclasses.replace(s, init_per_run=True, split_per_run=True) for s in specs(2)]
    assert own[0].data_split_seed != own[1].data_split_seed
    assert own[0].weights_seed != own[1].weights_seed
    tables = [make_dataset(P, 0.8, s.data_split_seed) for s in own]
    assert (tables[0]["is_train"] != tables[1]["is_train"]).any()
    masks = [torch.as_tensor(t["is_train"].to_numpy(copy=True)) for t in tables]
    cpu = torch.device("cpu")
    together = train_group(own, SplitTensors.per_run(tables[0], masks, P, cpu), cpu,
                           eval_every=10)
    for i, (spec, table) in enumerate(zip(own, tables, strict=True)):
        alone = train_group([spec], SplitTensors.from_table(table, P, cpu), cpu, eval_every=10)
        w_together = together.model.model_params(i)
        w_alone = alone.model.model_params(0)
        for name, w in w_alone.items():
            torch.testing.assert_close(w_together[name], w, rtol=1e-4, atol=1e-5)
        for col in ("train_loss", "test_loss", "train_acc", "test_acc"):
            diff = (together.history[i][col] - alone.history[0][col]).abs().max()
            assert diff < 1e-5, col


def test_runs_start_from_the_seeds_weights_unless_init_per_run() -> None:
    shared = train_group(specs(2, steps=1), SplitTensors.from_table(make_dataset(P, 0.8, 0), P,
                         torch.device("cpu")), torch.device("cpu"), eval_every=1)
    w = [shared.model.model_params(i)["embed.W_E"] for i in range(2)]
    own = [dataclasses.replace(s, init_per_run=True) for s in specs(2, steps=1)]
    mine = train_group(own, SplitTensors.from_table(make_dataset(P, 0.8, 0), P,
                       torch.device("cpu")), torch.device("cpu"), eval_every=1)
    v = [mine.model.model_params(i)["embed.W_E"] for i in range(2)]
    assert torch.equal(w[0], w[1])  # one step at lr 0 (warm-up): still the initial weights
    assert not torch.equal(v[0], v[1])


def test_the_cpu_allocator_setting_leaves_training_bit_identical(
        data: SplitTensors, monkeypatch: pytest.MonkeyPatch) -> None:
    # Process-wide, and only where memory comes from: never a value.
    import ctypes

    from clockpizza.science import train
    tune = train.tune_cpu_allocator
    assert sys.platform != "linux" or train.tune_cpu_allocator(), "glibc takes the setting"
    tuned = train_group(specs(steps=20, width=16), data, torch.device("cpu"), eval_every=5)
    libc = ctypes.CDLL(None)
    libc.mallopt(-4, 65536), libc.mallopt(-1, 128 * 1024)  # glibc's defaults again
    try:
        monkeypatch.setattr(train, "tune_cpu_allocator", lambda: False)
        plain = train_group(specs(steps=20, width=16), data, torch.device("cpu"), eval_every=5)
    finally:
        tune.cache_clear()  # the next train_group sets it again
    for name, value in tuned.model.state_dict().items():
        assert torch.equal(value, plain.model.state_dict()[name]), name
    for a, b in zip(tuned.history, plain.history, strict=True):
        assert a.equals(b)


def _subnormals_kept() -> int:
    """How many of 4M subnormal floats (1e-39) a multiplication keeps: all where no thread of the
    CPU pool flushes them, none where every thread does (the tensor reaches every thread)."""
    return int(torch.count_nonzero(torch.full((1 << 22,), 1e-39) * 1.0))


def test_flushed_subnormals_hold_while_a_run_trains_and_are_its_setting(
        data: SplitTensors) -> None:
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero mode")
    all_kept = 1 << 22
    assert _subnormals_kept() == all_kept, "the pytest process starts with them kept"
    plain = specs(n=2, steps=30, width=16)
    flushed = [dataclasses.replace(s, flush_denormals=True) for s in plain]
    seen: list[int] = []
    a = train_group(flushed, data, torch.device("cpu"), eval_every=10,
                    on_progress=lambda step: seen.append(_subnormals_kept()))
    assert seen and not any(seen), "subnormals are zero in every thread at every step"
    assert _subnormals_kept() == all_kept, "and kept again once it has trained"
    b = train_group(plain, data, torch.device("cpu"), eval_every=10,
                    on_progress=lambda step: seen.append(_subnormals_kept()))
    assert seen[-4:] == [all_kept] * 4, "a run without the setting keeps them"
    assert {s.run_id for s in flushed}.isdisjoint(s.run_id for s in plain)
    # the same mathematics: equal to rounding on a run this short
    for name, value in a.model.state_dict().items():
        torch.testing.assert_close(value, b.model.state_dict()[name], rtol=1e-4, atol=1e-5)


def test_the_grid_trains_with_the_params_setting_and_shipped_runs_keep_their_ids() -> None:
    import pandas as pd
    import yaml

    from clockpizza.io.params import parse_params
    from clockpizza.science.spec import grid_groups
    root = Path(__file__).resolve().parents[1]
    params = load_params(root / "params.yaml")
    runs = [s for _, group in grid_groups(params) for s in group]
    assert {s.flush_denormals for s in runs} == {params.train.flush_denormals}
    # runs trained before the setting existed: their params (no such key) give their ids
    folder = root / "results" / "paper_cpu_w128"
    # its params.yaml predates some sections training never reads: today's fill them in
    raw = yaml.safe_load((root / "params.yaml").read_text())
    shipped = parse_params(raw | yaml.safe_load((folder / "params.yaml").read_text()))
    assert shipped.train.flush_denormals is False
    ids = {s.run_id for _, group in grid_groups(shipped) for s in group}
    assert ids == set(pd.read_parquet(folder / "runs.parquet")["run_id"])


def test_a_run_without_the_setting_keeps_subnormals_in_a_process_that_flushes(
        data: SplitTensors) -> None:
    from clockpizza.science.subnormals import denormals_flushed
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero mode")
    seen: list[int] = []
    with denormals_flushed(True):  # e.g. a flushed group trained before, or a user's setting
        assert _subnormals_kept() == 0
        train_group(specs(n=2, steps=20, width=16), data, torch.device("cpu"), eval_every=10,
                    on_progress=lambda step: seen.append(_subnormals_kept()))
        assert _subnormals_kept() == 0, "the process's own setting is given back"
    assert seen == [1 << 22] * len(seen) and seen


def test_an_openmp_runtime_the_process_has_not_loaded_is_never_loaded_beside_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from clockpizza.science import subnormals
    subnormals._openmp.cache_clear()
    try:
        monkeypatch.setattr(subnormals, "_loaded_libraries", lambda: "")
        assert subnormals._openmp() is None
        subnormals._openmp.cache_clear()
        monkeypatch.undo()
        if sys.platform == "linux" and list((Path(torch.__file__).parent / "lib").glob("libgomp*")):
            assert subnormals._openmp() is not None, "PyTorch's own, loaded, is used"
    finally:
        subnormals._openmp.cache_clear()


def test_the_benchmark_keeps_a_flushed_row_apart_and_shows_defaults_in_its_help(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench, "peak_matmul_tflops", lambda *a, **k: 1.0)
    report = tmp_path / "benchmarks.md"
    args = ["--width", "8", "--n-models", "2", "--steps", "3", "--warmup", "1",
            "--reference-steps", "2", "--device", "cpu", "--repeats", "1", "--json",
            "--report", str(report)]
    bench.main(args)
    bench.main([*args, "--flush-denormals"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["flush_denormals"] is True
    rows = [ln for ln in report.read_text().splitlines() if ln.startswith("| cpu | 8 |")]
    assert len(rows) == 2 and sum("subnormals flushed" in r for r in rows) == 1
    with pytest.raises(SystemExit):
        bench.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 100)" in text and "(default: None)" not in text
    assert "(default: False)" not in text
