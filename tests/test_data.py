"""The modular-addition table, its seeded split, and the token encoding of the ablations."""

from __future__ import annotations

import pytest
import torch

from clockpizza.science.data import all_pairs, context_length, encode, make_dataset, vocab_size


@pytest.mark.parametrize(("p", "n_train"), [(59, 2785), (7, 39), (5, 20)])
def test_table_has_every_pair_once_with_its_label(p: int, n_train: int) -> None:
    # n_train by hand: round(0.8 * 3481 = 2784.8) = 2785, round(0.8 * 49 = 39.2) = 39,
    # 0.8 * 25 = 20.
    df = make_dataset(p, 0.8, split_seed=0)
    assert len(df) == p * p
    pairs = list(zip(df["a"].tolist(), df["b"].tolist(), strict=True))
    assert sorted(pairs) == [(a, b) for a in range(p) for b in range(p)]
    for a, b, label in zip(df["a"], df["b"], df["label"], strict=True):
        assert label == (a + b) % p
    assert int(df["is_train"].sum()) == n_train


def test_train_and_test_are_disjoint_and_cover_all_pairs() -> None:
    p = 11
    df = make_dataset(p, 0.8, split_seed=3)
    train = {(a, b) for a, b in df.loc[df["is_train"], ["a", "b"]].itertuples(index=False)}
    test = {(a, b) for a, b in df.loc[~df["is_train"], ["a", "b"]].itertuples(index=False)}
    assert train.isdisjoint(test)
    assert train | test == {(a, b) for a in range(p) for b in range(p)}
    assert len(test) == p * p - round(0.8 * p * p)


def test_split_is_reproducible_and_depends_on_the_seed() -> None:
    first = make_dataset(59, 0.8, split_seed=0)["is_train"].tolist()
    again = make_dataset(59, 0.8, split_seed=0)["is_train"].tolist()
    other = make_dataset(59, 0.8, split_seed=1)["is_train"].tolist()
    assert first == again
    assert first != other
    # A different seed reshuffles the split, not just a few pairs at its edge.
    assert sum(x != y for x, y in zip(first, other, strict=True)) > 500


def test_split_is_not_ordered() -> None:
    # An unshuffled split would put every pair with a large `a` in the test set.
    df = make_dataset(59, 0.8, split_seed=0)
    test_a = df.loc[~df["is_train"], "a"]
    assert test_a.min() < 10 and test_a.max() > 49


def test_all_pairs_is_row_major() -> None:
    a, b = all_pairs(4)
    assert a.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]
    assert b.tolist() == [0, 1, 2, 3] * 4


def test_encode_plain() -> None:
    a, b = torch.tensor([0, 3, 6]), torch.tensor([6, 2, 0])
    assert encode(a, b, 7).tolist() == [[0, 6], [3, 2], [6, 0]]
    assert vocab_size(7) == 7
    assert context_length() == 2


def test_encode_diff_vocab_writes_b_as_b_plus_p() -> None:
    a, b = torch.tensor([0, 3, 6]), torch.tensor([6, 2, 0])
    assert encode(a, b, 7, diff_vocab=True).tolist() == [[0, 13], [3, 9], [6, 7]]
    assert vocab_size(7, diff_vocab=True) == 14


def test_encode_eqn_sign_appends_the_last_vocabulary_id() -> None:
    a, b = torch.tensor([0, 6]), torch.tensor([5, 1])
    assert encode(a, b, 7, eqn_sign=True).tolist() == [[0, 5, 7], [6, 1, 7]]
    assert vocab_size(7, eqn_sign=True) == 8
    assert context_length(eqn_sign=True) == 3
    # Both ablations: b in 7..13, '=' is id 14, the 15th and last token.
    both = encode(a, b, 7, diff_vocab=True, eqn_sign=True)
    assert both.tolist() == [[0, 12, 14], [6, 8, 14]]
    assert vocab_size(7, diff_vocab=True, eqn_sign=True) == 15
