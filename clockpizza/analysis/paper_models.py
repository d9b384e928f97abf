"""The paper_models stage's work: the authors' released checkpoints measured with this project's
metrics, beside the values the authors published for them.

One row per vendored checkpoint (``paper/checkpoints``), in run-id order, with the columns of
:data:`clockpizza.io.table.PAPER_MEASURED_SCHEMA` (no phase: the summarise stage labels the table,
:func:`clockpizza.results.labels.label_paper_models`); ``*_published`` are copied from the authors'
per-run table (``paper/published_runs_fixed_width.csv``) where the run is one of its rows, NaN
otherwise. GS is computed with the paper's 100 triples (seed 42) whatever ``metrics.gs_triples``
says, because the published values are of that estimate.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import torch

from clockpizza.analysis.circles import analyse_models, run_summary
from clockpizza.analysis.mechanism import example_tables
from clockpizza.analysis.metrics import (
    all_pair_logits,
    circularity,
    correct_logits,
    distance_irrelevance,
    gradient_symmetricity,
    gradient_symmetricity_exact,
    gs_triples,
    largest_incorrect_logits,
)
from clockpizza.io.params import CirclesConfig
from clockpizza.io.table import CIRCLE_COLUMNS
from clockpizza.results.paper_compare import PAPER_EXAMPLES
from clockpizza.science.data import all_pairs
from clockpizza.science.model import BatchedTransformer
from clockpizza.science.paper import PaperRun, load_paper_run, paper_checkpoints

# the triples behind the published GS (docs/specification.md, "Metrics")
PAPER_GS_TRIPLES, PAPER_GS_SEED = 100, 42
# The published table's columns -> ours.
PUBLISHED = {"gradient_sim": "gradient_symmetricity", "distance_irrelevance":
             "distance_irrelevance", "circularity": "circularity"}


def read_published(path: str | Path) -> pd.DataFrame:
    """The authors' fixed-width per-run table (the copy in ``paper/``), indexed by ``runid``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (the authors' published table, in git)")
    return pd.read_csv(path).set_index("runid")


def measure(run: PaperRun, n_components: int, circles: CirclesConfig) -> tuple[dict[str, object],
                                                                              pd.DataFrame]:
    """One released model's row (without the published columns) and its circles."""
    p = run.p
    model = run.model()
    enc = {"diff_vocab": run.diff_vocab, "eqn_sign": run.eqn_sign}
    triples = gs_triples(p, PAPER_GS_TRIPLES, PAPER_GS_SEED)
    with torch.no_grad():
        logits = all_pair_logits(model, p, **enc)
    a, b = all_pairs(p)
    w_e = model.embed.W_E.detach()
    row: dict[str, object] = {
        "paper_runid": run.runid, "family": run.family,
        "attn_rate": math.nan if run.attn_rate is None else run.attn_rate,
        "width": run.cfg.d_model if isinstance(model, BatchedTransformer) else run.cfg.width,
        "n_layers": run.cfg.n_layers if isinstance(model, BatchedTransformer) else 0,
        "act": run.cfg.act if isinstance(model, BatchedTransformer) else "relu",
        "diff_vocab": run.diff_vocab, "eqn_sign": run.eqn_sign, "p": p,
        "accuracy": float((logits.argmax(dim=-1) == (a + b) % p).double().mean()),
        "gradient_symmetricity": float(gradient_symmetricity(model, p, triples, **enc)[0]),
        "gradient_symmetricity_as_published": float(
            gradient_symmetricity(model, p, triples, paper_tokens=True, **enc)[0]),
        "gradient_symmetricity_exact": float(gradient_symmetricity_exact(model, p, **enc)[0]),
        "distance_irrelevance": float(distance_irrelevance(
            largest_incorrect_logits(logits, p))[0]),
        "distance_irrelevance_correct": float(distance_irrelevance(correct_logits(logits, p))[0]),
        "circularity": float(circularity(w_e[:, :p], n_components)[0]),
        "circularity_published_method": float(circularity(w_e, n_components, p=p)[0]),
    }
    if isinstance(model, BatchedTransformer):
        frame = analyse_models(model, p, max_circles=circles.max_circles,
                               min_var_share=circles.min_var_share, min_fve=circles.min_fve,
                               type_from=circles.type_from, **enc)[0]
    else:  # the attention-free family is not circle-analysed (as for our own runs)
        frame = pd.DataFrame(columns=[c for c in CIRCLE_COLUMNS if c != "run_id"])
    return row | run_summary(frame), frame.assign(run_id=run.runid)


def paper_tables(folder: str | Path, published_csv: str | Path, n_components: int,
                 circles: CirclesConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The measured paper-models table (no phase) and the circles of each released model
    (``run_id`` = runid)."""
    paths = paper_checkpoints(folder)
    if not paths:
        raise FileNotFoundError(f"{folder}: no *.safetensors checkpoints")
    published = read_published(published_csv)
    rows, frames = [], []
    for path in paths:
        row, frame = measure(load_paper_run(path), n_components, circles)
        pub = published.loc[row["paper_runid"]] if row["paper_runid"] in published.index else None
        for theirs, ours in PUBLISHED.items():
            row[f"{ours}_published"] = math.nan if pub is None else float(pub[theirs])
        rows.append(row)
        frames.append(frame)
    table = pd.DataFrame(rows)
    circle_table = pd.concat([f for f in frames if not f.empty], ignore_index=True)
    return table, circle_table[list(CIRCLE_COLUMNS)]


def paper_examples(folder: str | Path, n_pcs: int) -> dict[str, pd.DataFrame]:
    """Figure 3's tables (:func:`clockpizza.analysis.mechanism.example_tables`) for the
    authors' Model A and Model B, stacked (pizza rows first)."""
    parts: dict[str, list[pd.DataFrame]] = {}
    for role, runid in PAPER_EXAMPLES.items():
        path = Path(folder) / f"{runid}.safetensors"
        run = load_paper_run(path)
        model = run.model()
        if not isinstance(model, BatchedTransformer):
            raise ValueError(f"{path}: Model {'A' if role == 'pizza' else 'B'} must be a "
                             "transformer")
        for name, df in example_tables(model, run.p, role, runid, n_pcs).items():
            parts.setdefault(name, []).append(df)
    return {name: pd.concat(dfs, ignore_index=True) for name, dfs in parts.items()}
