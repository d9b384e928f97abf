"""The one runs table: its Parquet schema, defined once, and atomic file writes.

Torch-free on purpose: figures and reports read only this table.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# Column -> Arrow type, in table order. A row per trained model.
RUNS_SCHEMA = pa.schema([
    ("run_id", pa.string()),  # hash of the run's defining config
    # grid coordinates and seeds
    ("family", pa.string()),  # "transformer", or the attention-free model "A".."D", "X"
    ("attn_rate", pa.float64()),  # NaN (missing) for the attention-free models
    ("width", pa.int64()),  # d_model (attention-free models: their width h)
    ("seed", pa.int64()),  # init_seed
    ("n_layers", pa.int64()),  # transformer blocks (0 for the attention-free models)
    ("n_heads", pa.int64()),  # (0 for the attention-free models)
    ("act", pa.string()),
    ("diff_vocab", pa.bool_()),  # ablation: b written as token b + p (false for A..X)
    ("eqn_sign", pa.bool_()),  # ablation: '=' token appended (false for A..X)
    ("p", pa.int64()),
    ("split_seed", pa.int64()),
    ("init_per_run", pa.bool_()),  # initial weights seeded from the run id, not the seed alone
    ("split_per_run", pa.bool_()),  # train/test split seeded from the run id, not split_seed
    ("steps", pa.int64()),
    ("precision", pa.string()),
    ("engine", pa.string()),  # train.engine that trained it: "fast" or "reference"
    ("device", pa.string()),
    # results
    ("train_loss", pa.float64()),
    ("test_loss", pa.float64()),
    ("train_acc", pa.float64()),
    ("test_acc", pa.float64()),
    # Where the paper's published tables and its text differ, both (docs/specification.md,
    # "Metrics"); the
    # unsuffixed column is the one the figures, the phase rule and the summary read.
    ("gradient_symmetricity", pa.float64()),  # mean over the gs_triples below (paper: 100)
    ("gradient_symmetricity_exact", pa.float64()),  # mean over all p³ triples
    ("gs_triples", pa.int64()),  # triples behind gradient_symmetricity; 0 = all p³
    ("gs_seed", pa.int64()),  # their seed (paper: 42); -1 when gs_triples = 0
    ("distance_irrelevance", pa.float64()),  # of the largest incorrect logit (published tables)
    ("distance_irrelevance_correct", pa.float64()),  # of the correct logit (text, notebook)
    ("circularity", pa.float64()),  # the specification's, PCA of W_E[:p]
    ("circularity_published", pa.float64()),  # notebook's, PCA of all rows (differs if ablated)
    ("param_norm", pa.float64()),
    # circle evidence, a summary of the run's rows in circles.parquet (clockpizza.analysis.circles)
    ("n_circles", pa.int64()),
    ("dominant_circle_type", pa.string()),  # type of the circle of largest variance share
    ("fve_clock_mean", pa.float64()),  # mean over the run's circles; NaN without circles
    ("fve_pizza_mean", pa.float64()),
    ("clock_circle_share", pa.float64()),  # share of the circles' variance in clock circles
    ("pizza_circle_share", pa.float64()),  # ... in pizza and accompanying circles
    ("phase", pa.string()),  # pizza / clock / non-circular (rule: clockpizza.results.phases)
    ("diverged", pa.bool_()),  # training loss became non-finite or rose above its start
    ("diverged_step", pa.int64()),  # first history step where it did; -1: it never did
    # training dynamics (metrics/dynamics.parquet; -1: the run kept no snapshots / never did)
    ("phase_settle_step", pa.int64()),  # first snapshot step from which the label is final
    ("phase_switched", pa.bool_()),  # pizza <-> clock on the way (non-circular does not count)
    ("gs_settle_step", pa.int64()),  # first snapshot step with GS within 0.02 of final after
    ("di_settle_step", pa.int64()),  # the same for DI
    ("full_test_acc_step", pa.int64()),  # first history step with test accuracy 1
])
RUN_COLUMNS: tuple[str, ...] = tuple(RUNS_SCHEMA.names)

# The paper-length runs shipped under results/ in one table (metrics/paper_scale_runs.parquet):
# the runs table and the results folder each row came from.
PAPER_SCALE_SCHEMA = RUNS_SCHEMA.append(pa.field("source", pa.string()))

# What the metrics stage measures (metrics/measured.parquet): the runs table without the columns
# the phase rule decides, which the summarise stage adds; so a changed phase threshold or
# bootstrap size measures no model again.
LABELLED_COLUMNS = ("phase", "phase_settle_step", "phase_switched", "gs_settle_step",
                    "di_settle_step")
MEASURED_SCHEMA = pa.schema([f for f in RUNS_SCHEMA if f.name not in LABELLED_COLUMNS])

# A row per circle of a run's embedding (docs/specification.md "Per-circle analysis";
# clockpizza.analysis.circles says exactly how each number is computed).
CIRCLES_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("circle", pa.int64()),  # 0, 1, ... in the order of the circle's first component
    ("pc_a", pa.int64()),  # the two principal components (0-based) spanning the circle
    ("pc_b", pa.int64()),
    ("freq", pa.int64()),  # frequency k of the embedding circle, 1..p // 2 (w = 2πk/p)
    ("var_share", pa.float64()),  # share of the embedding's variance in the circle's plane
    ("circularity", pa.float64()),  # share of the pair's DFT energy at ±k
    ("fve_clock", pa.float64()),  # FVE (2ρ − 1) of the logit tensor, circle alone, by Q_clock
    ("fve_pizza", pa.float64()),  # ... by Q_pizza
    ("fve_acc", pa.float64()),  # ... by Q_acc (evaluated at half the circle's frequency)
    # The same after removing the logits' mean over (a, b) at each c, which no template explains
    ("fve_clock_centred", pa.float64()),
    ("fve_pizza_centred", pa.float64()),
    ("fve_acc_centred", pa.float64()),
    ("type", pa.string()),  # clock / pizza / accompanying / none (from circles.type_from)
])
CIRCLE_COLUMNS: tuple[str, ...] = tuple(CIRCLES_SCHEMA.names)

# A row per released checkpoint of the authors (paper/), measured with this project's metrics;
# *_published: the value in the authors' per-run table, NaN for a run that is not one of its rows
# (clockpizza.analysis.paper_models).
PAPER_MODELS_SCHEMA = pa.schema([
    ("paper_runid", pa.string()),  # the authors' run id
    ("family", pa.string()),  # "transformer", or the attention-free model "B" / "D"
    ("attn_rate", pa.float64()),  # their attn_coeff; NaN for the attention-free models
    ("width", pa.int64()),
    ("n_layers", pa.int64()),
    ("act", pa.string()),
    ("diff_vocab", pa.bool_()),
    ("eqn_sign", pa.bool_()),
    ("p", pa.int64()),
    ("accuracy", pa.float64()),  # over all p² pairs (their split is not known)
    ("gradient_symmetricity", pa.float64()),  # the paper's 100 triples, rows as trained
    ("gradient_symmetricity_as_published", pa.float64()),  # ... with b as token b (diff_vocab)
    ("gradient_symmetricity_exact", pa.float64()),  # all p³ triples
    ("distance_irrelevance", pa.float64()),  # largest incorrect logit (published variant)
    ("distance_irrelevance_correct", pa.float64()),  # correct logit (text, notebook)
    ("circularity", pa.float64()),  # the specification's, W_E[:p]
    ("circularity_published_method", pa.float64()),  # the notebook's, all rows
    ("gradient_symmetricity_published", pa.float64()),
    ("distance_irrelevance_published", pa.float64()),
    ("circularity_published", pa.float64()),
    ("n_circles", pa.int64()),
    ("dominant_circle_type", pa.string()),
    ("fve_clock_mean", pa.float64()),
    ("fve_pizza_mean", pa.float64()),
    ("clock_circle_share", pa.float64()),
    ("pizza_circle_share", pa.float64()),
    ("phase", pa.string()),  # our rule (clockpizza.results.phases)
])
# The same, as the paper_models stage measures it (metrics/paper_measured.parquet): no phase yet;
# the summarise stage labels it, as it does our runs.
PAPER_MEASURED_SCHEMA = pa.schema([f for f in PAPER_MODELS_SCHEMA if f.name != "phase"])

# The mid-α experiment (python -m clockpizza.tools.mid_alpha; results/mid_alpha/mid_alpha.csv):
# a row per run, the columns its CSV holds; the summarise stage adds ``phase_now``
# (metrics/mid_alpha.parquet). Circle shares are NaN in a table older than them.
MID_ALPHA_SCHEMA = pa.schema([
    pa.field("condition", pa.string()),  # shared / own_init / own_init_split / paper_loop
    *(RUNS_SCHEMA.field(c) for c in (
        "attn_rate", "width", "seed", "steps", "test_acc", "gradient_symmetricity",
        "gradient_symmetricity_exact", "distance_irrelevance", "distance_irrelevance_correct",
        "circularity", "n_circles", "dominant_circle_type", "fve_clock_mean", "fve_pizza_mean",
        "clock_circle_share", "pizza_circle_share",
        "phase")),  # phase: by the rule when the runs were trained
    pa.field("phase_now", pa.string()),  # by the rule in params.yaml (clockpizza.results.labels)
])


_UMASK = os.umask(0)
os.umask(_UMASK)


# One row per run × snapshot step (the analysis of clockpizza.analysis.dynamics).
DYNAMICS_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("step", pa.int64()),
    ("train_loss", pa.float64()),
    ("test_loss", pa.float64()),
    ("train_acc", pa.float64()),
    ("test_acc", pa.float64()),
    ("gradient_symmetricity", pa.float64()),  # the paper's triples (metrics.gs_triples)
    ("distance_irrelevance", pa.float64()),  # largest incorrect logit (published)
    ("distance_irrelevance_correct", pa.float64()),  # correct logit (the text's)
    ("circularity", pa.float64()),
    ("phase", pa.string()),  # the GS/DI rule without the circles (results.dynamics)
])
# The same, as the metrics stage measures it (metrics/snapshots.parquet): no phase yet.
SNAPSHOTS_SCHEMA = pa.schema([f for f in DYNAMICS_SCHEMA if f.name != "phase"])


# The first-layer neurons of each transformer (clockpizza.analysis.neurons says exactly how each
# number is computed): one row per run × neuron, one per run × frequency cluster, one per run.
# The same schemas serve the authors' released models (metrics/paper_neurons*.parquet), where
# run_id is the authors' run id.
NEURONS_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("neuron", pa.int64()),  # index into d_mlp of the first block
    ("freq", pa.int64()),  # f of the simple-neuron fit, 1..(p − 1)/2
    ("amp_left", pa.float64()),  # A_L: amplitude of the mean over b, a function of a
    ("amp_right", pa.float64()),  # A_R: ... of the mean over a, a function of b
    ("phase_left", pa.float64()),  # φ_L in [0, 2π) (radians)
    ("phase_right", pa.float64()),  # φ_R in [0, 2π)
    ("phase_diff", pa.float64()),  # φ_L − φ_R wrapped to (−π, π]
    ("r2", pa.float64()),  # R² of the fit over all p² pairs (NaN: constant pre-activation)
    ("std", pa.float64()),  # standard deviation of the pre-activation over the p² pairs
    ("dead", pa.bool_()),  # never fires, or std below neurons.dead_rel_std × the median
    ("fitted", pa.bool_()),  # alive and r2 >= neurons.min_r2: it joins its frequency's cluster
])
NEURON_CLUSTERS_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("freq", pa.int64()),
    ("n_neurons", pa.int64()),  # fitted neurons of this frequency
    ("variance", pa.float64()),  # total variance of their pre-activations over the p² pairs
    ("resultant", pa.float64()),  # mean resultant length of φ_L − φ_R, in [0, 1]
    ("mean_phase_diff", pa.float64()),  # circular mean of φ_L − φ_R (the disc template's Δ)
    ("top2_share", pa.float64()),  # share of the variance in the top 2 singular directions
    ("top4_share", pa.float64()),  # ... top 4
    ("cka_disc", pa.float64()),  # linear CKA to the disc template
    ("cka_torus", pa.float64()),  # ... to the torus template
    ("verdict", pa.string()),  # disc / torus / mixed, or small (too few neurons to judge)
])
NEURON_RUNS_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("attn_rate", pa.float64()),
    ("width", pa.int64()),
    ("seed", pa.int64()),  # init_seed (-1 for the authors' models: not known)
    ("n_layers", pa.int64()),
    ("n_neurons", pa.int64()),  # d_mlp
    ("n_dead", pa.int64()),
    ("n_fitted", pa.int64()),
    ("fitted_share", pa.float64()),  # n_fitted / alive neurons
    ("median_r2", pa.float64()),  # over the alive neurons
    ("n_freqs", pa.int64()),  # clusters with a verdict: the frequencies the run keeps
    ("disc_share", pa.float64()),  # share of those clusters judged disc (NaN: none)
    ("torus_share", pa.float64()),
    ("cka_disc", pa.float64()),  # clusters' CKA to the disc template, variance-weighted mean
    ("cka_torus", pa.float64()),
])
NEURON_TABLES = {"neurons": NEURONS_SCHEMA, "neuron_clusters": NEURON_CLUSTERS_SCHEMA,
                 "neuron_runs": NEURON_RUNS_SCHEMA}


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same directory, then rename over ``path``.

    A kill mid-write leaves the old file (or none), never a half-written one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    atomic_write(Path(path), lambda t: t.write_text(text))


def write_json(path: str | Path, obj: object) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_parquet(path: str | Path, df: pd.DataFrame, schema: pa.Schema | None = None) -> None:
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    atomic_write(Path(path), lambda t: pq.write_table(table, t))


def write_runs_table(path: str | Path, df: pd.DataFrame) -> None:
    """Write the runs table with exactly the schema above (missing columns are an error)."""
    missing = [c for c in RUN_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"runs table is missing columns {missing}")
    write_parquet(path, df[list(RUN_COLUMNS)], RUNS_SCHEMA)


def read_runs_table(path: str | Path) -> pd.DataFrame:
    """Read the runs table, refusing a file that does not carry the schema's columns."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; run `dvc repro metrics` first")
    df = pd.read_parquet(path)
    missing = [c for c in RUN_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; rerun `dvc repro metrics`")
    return df


# The data behind the Model A / Model B figures (specification figure 3), written by the mechanism
# stage
# for one pizza run and one clock run; `role` is "pizza" (Model A) or "clock" (Model B).
EMBEDDING_SCHEMA = pa.schema([  # token coordinates along the leading principal components
    ("role", pa.string()),
    ("run_id", pa.string()),
    ("token", pa.int64()),
    ("pc", pa.int64()),  # 0-based component index, as pc_a / pc_b in circles.parquet
    ("value", pa.float64()),
])
CORRECT_LOGITS_SCHEMA = pa.schema([  # L(a, b) = logits(a, b)[(a + b) mod p], all p² pairs
    ("role", pa.string()),
    ("run_id", pa.string()),
    ("a", pa.int64()),
    ("b", pa.int64()),
    ("s", pa.int64()),  # (a + b) mod p
    ("delta", pa.int64()),  # (a − b) mod p
    ("logit", pa.float64()),
])
ATTENTION_SCHEMA = pa.schema([  # attention weights of the last position (the one read out)
    ("role", pa.string()),
    ("run_id", pa.string()),
    ("layer", pa.int64()),
    ("head", pa.int64()),
    ("a", pa.int64()),
    ("b", pa.int64()),
    ("key", pa.int64()),  # attended position: 0 holds a, 1 holds b
    ("weight", pa.float64()),  # α · softmax + (1 − α): at α = 0 every weight is 1
])
EXAMPLE_TABLES = {"embedding": EMBEDDING_SCHEMA, "correct_logits": CORRECT_LOGITS_SCHEMA,
                  "attention": ATTENTION_SCHEMA}


def write_table(path: str | Path, df: pd.DataFrame, schema: pa.Schema) -> None:
    """Write ``df`` with exactly ``schema`` (missing columns are an error)."""
    missing = [c for c in schema.names if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: table is missing columns {missing}")
    write_parquet(path, df[list(schema.names)], schema)


def read_table(path: str | Path, schema: pa.Schema, stage: str) -> pd.DataFrame:
    """Read a table written by ``stage``, refusing one without the schema's columns."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; run `dvc repro {stage}` first")
    df = pd.read_parquet(path)
    missing = [c for c in schema.names if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; rerun `dvc repro {stage}`")
    return df
