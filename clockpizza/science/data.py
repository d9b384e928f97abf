"""The modular-addition table and its seeded train/test split (docs/specification.md, "Task")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

DATASET_COLUMNS = ("a", "b", "label", "is_train")


def make_dataset(p: int, train_frac: float, split_seed: int) -> pd.DataFrame:
    """All p² pairs (a, b) with label (a + b) mod p and a seeded random split.

    Paper choice: an 80/20 random split of all pairs. The paper's split was unseeded; here the
    permutation comes from ``numpy.random.default_rng(split_seed)`` so it reproduces exactly.
    Rows are in (a, b) order; ``is_train`` marks the round(train_frac · p²) training pairs.
    """
    a, b = np.divmod(np.arange(p * p, dtype=np.int64), p)
    n_train = round(train_frac * p * p)
    order = np.random.default_rng(split_seed).permutation(p * p)
    is_train = np.zeros(p * p, dtype=bool)
    is_train[order[:n_train]] = True
    return pd.DataFrame({"a": a, "b": b, "label": (a + b) % p, "is_train": is_train})


def check_dataset(df: pd.DataFrame, p: int, source: str) -> None:
    """Refuse a dataset table that is not the p² pairs this params file describes."""
    missing = [c for c in DATASET_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; expected {list(DATASET_COLUMNS)}")
    if len(df) != p * p:
        raise ValueError(f"{source}: {len(df)} rows but data.p = {p} needs {p * p}; "
                         "rerun the dataset stage (dvc repro dataset)")


def encode(a: torch.Tensor, b: torch.Tensor, p: int, *, diff_vocab: bool = False,
           eqn_sign: bool = False) -> torch.Tensor:
    """Token ids ``[batch, n_ctx]`` for operands a, b.

    ``diff_vocab`` writes b as b + p (vocabulary 2p); ``eqn_sign`` appends an '=' token with the
    last id of the vocabulary (docs/specification.md ablations).
    """
    cols = [a, b + p if diff_vocab else b]
    if eqn_sign:
        cols.append(torch.full_like(a, vocab_size(p, diff_vocab=diff_vocab, eqn_sign=True) - 1))
    return torch.stack(cols, dim=-1)


def vocab_size(p: int, *, diff_vocab: bool = False, eqn_sign: bool = False) -> int:
    return (2 * p if diff_vocab else p) + int(eqn_sign)


def context_length(*, eqn_sign: bool = False) -> int:
    return 3 if eqn_sign else 2


def all_pairs(p: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Operands (a, b) of all p² pairs in (a, b) row-major order, so ``.view(p, p)`` is [a, b]."""
    idx = torch.arange(p * p, device=device)
    return idx // p, idx % p


def load_dataset(path: str | Path, p: int) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run `dvc repro dataset` first")
    df = pd.read_parquet(path)
    check_dataset(df, p, str(path))
    return df
