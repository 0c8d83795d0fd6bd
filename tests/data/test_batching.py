"""Tests for padding, batch construction and token-budget batching (s2s.data.batching)."""

from __future__ import annotations

import random

import datasets
import numpy as np
import pytest
import torch

from s2s.data.batching import TrainBatches, make_batch, pad, token_budget_batches
from s2s.special_tokens import BOS, EOS, PAD
from tests.helpers import random_ids

# ---------------------------------------------------------------- pad


def test_pad_plain():
    out = pad([[5, 6, 7], [8]])
    assert out.dtype == torch.long
    assert out.tolist() == [[5, 6, 7], [8, PAD, PAD]]


def test_pad_prefix_and_suffix():
    assert pad([[5, 6], [7]], prefix=BOS).tolist() == [[BOS, 5, 6], [BOS, 7, PAD]]
    assert pad([[5, 6], [7]], suffix=EOS).tolist() == [[5, 6, EOS], [7, EOS, PAD]]
    assert pad([[5], [6, 7, 8]], prefix=BOS, suffix=EOS).tolist() == [
        [BOS, 5, EOS, PAD, PAD],
        [BOS, 6, 7, 8, EOS],
    ]


def test_pad_empty_sequence_gets_its_extras():
    assert pad([[], [4, 5]], suffix=EOS).tolist() == [[EOS, PAD, PAD], [4, 5, EOS]]


# ---------------------------------------------------------------- make_batch


def test_make_batch_layout():
    src = [[4, 5, 6], [7]]
    tgt = [[8, 9], [10, 11, 12, 13]]
    batch = make_batch(src, tgt, [3, 1])
    assert batch.src.tolist() == [[4, 5, 6, EOS], [7, EOS, PAD, PAD]]
    assert batch.src_lengths.tolist() == [4, 2]
    assert batch.tgt_in.tolist() == [[BOS, 8, 9, PAD, PAD], [BOS, 10, 11, 12, 13]]
    assert batch.tgt_out.tolist() == [[8, 9, EOS, PAD, PAD], [10, 11, 12, 13, EOS]]
    assert batch.indices.tolist() == [3, 1]
    assert batch.num_tgt_tokens == 3 + 5


def test_make_batch_lengths_match_mask_and_shift():
    rng = random.Random(0)
    src, tgt = random_ids(rng, 7), random_ids(rng, 7)
    batch = make_batch(src, tgt, range(7))
    assert batch.src_lengths.tolist() == batch.src.ne(PAD).sum(1).tolist()
    assert batch.src_lengths.tolist() == [len(s) + 1 for s in src]
    # tgt_out is tgt_in shifted left by one, with EOS where tgt_in has its last real token
    for row, t in enumerate(tgt):
        assert batch.tgt_in[row, 1 : len(t) + 1].tolist() == t
        assert batch.tgt_out[row, : len(t)].tolist() == t
        assert int(batch.tgt_out[row, len(t)]) == EOS
    assert batch.tgt_in.shape == batch.tgt_out.shape
    assert batch.tgt_in.ne(PAD).sum() == batch.tgt_out.ne(PAD).sum()


def test_make_batch_without_target():
    batch = make_batch([[4, 5]], None, [0])
    assert batch.tgt_in is None and batch.tgt_out is None
    assert batch.num_tgt_tokens == 0
    assert batch.src.tolist() == [[4, 5, EOS]]


# ---------------------------------------------------------------- token_budget_batches


def _lengths(seed: int, count: int = 300, low: int = 1, high: int = 30):
    rng = random.Random(seed)
    src = [rng.randint(low, high) for _ in range(count)]
    tgt = [max(1, s + rng.randint(-3, 3)) for s in src]
    return src, tgt


def _padded_size(batch: list[int], src: list[int], tgt: list[int]) -> int:
    return len(batch) * (max(max(src[i], tgt[i]) for i in batch) + 1)


@pytest.mark.parametrize("use_generator", [False, True])
@pytest.mark.parametrize("max_tokens", [1, 40, 200, 1000])
def test_budget_batches_cover_every_index_once_and_fit(use_generator, max_tokens):
    src, tgt = _lengths(1)
    generator = torch.Generator().manual_seed(5) if use_generator else None
    batches = token_budget_batches(src, tgt, max_tokens, generator)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(src)))
    assert all(b for b in batches)
    for b in batches:
        if len(b) > 1:
            assert _padded_size(b, src, tgt) <= max_tokens
    if max_tokens == 1:
        assert all(len(b) == 1 for b in batches)  # nothing fits: one sentence per batch


def test_budget_batches_are_reasonably_full():
    # greedy packing of sorted lengths: adding the next sentence would have broken the budget
    src, tgt = _lengths(2)
    batches = token_budget_batches(src, tgt, 300)  # no generator: sorted order is kept
    for b, following in zip(batches, batches[1:]):
        grown = b + following[:1]
        assert _padded_size(grown, src, tgt) > 300


def _padding(batches: list[list[int]], lengths: list[int]) -> float:
    """Padding positions per real position on one side (+1 for EOS/BOS)."""
    padded = sum(len(b) * (max(lengths[i] for i in b) + 1) for b in batches)
    return padded / sum(lengths[i] + 1 for b in batches for i in b) - 1


def test_budget_batches_have_little_target_padding():
    """Sorted by target length first: the decoder, which computes over padding, gets almost none;
    the source side (packed in the encoder) takes the length differences."""
    src, tgt = _lengths(3, count=2000)
    batches = token_budget_batches(src, tgt, 400, torch.Generator().manual_seed(0))
    assert _padding(batches, tgt) < 0.02 < _padding(batches, src) < 0.2
    by_source = token_budget_batches(src, tgt, 400, torch.Generator().manual_seed(0), source_first=True)
    assert (
        _padding(by_source, src) < 0.02 < _padding(by_source, tgt) < 0.2
    )  # data.sort_first=source: the other way round
    # whereas batches of the same sizes in random order pad much more
    order = list(range(len(src)))
    random.Random(0).shuffle(order)
    shuffled, cursor = [], 0
    for b in batches:
        shuffled.append(order[cursor : cursor + len(b)])
        cursor += len(b)
    assert _padding(shuffled, tgt) > 0.3


def test_budget_batches_deterministic_per_seed():
    src, tgt = _lengths(4)
    run = lambda seed: token_budget_batches(src, tgt, 200, torch.Generator().manual_seed(seed))  # noqa: E731
    assert run(7) == run(7)
    assert run(7) != run(8)
    # without a generator the result is fixed too
    assert token_budget_batches(src, tgt, 200) == token_budget_batches(src, tgt, 200)


def _reference_budget_batches(src_lengths, tgt_lengths, max_tokens, generator=None, source_first=False):
    """The original one-sentence-at-a-time implementation; the vectorized one must agree exactly."""
    count = len(src_lengths)
    src = torch.as_tensor(src_lengths, dtype=torch.long)
    tgt = torch.as_tensor(tgt_lengths, dtype=torch.long)
    order = torch.randperm(count, generator=generator) if generator is not None else torch.arange(count)
    second, first = (tgt, src) if source_first else (src, tgt)
    order = order[torch.sort(second[order], stable=True).indices]
    order = order[torch.sort(first[order], stable=True).indices]
    longest = torch.maximum(src, tgt)[order] + 1
    batches, current, current_max = [], [], 0
    for index, length in zip(order.tolist(), longest.tolist()):
        new_max = max(current_max, length)
        if current and new_max * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, new_max = [], length
        current.append(index)
        current_max = new_max
    if current:
        batches.append(current)
    if generator is not None:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


@pytest.mark.parametrize("source_first", [False, True])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("max_tokens", [0, 1, 7, 64, 500, 5000])
def test_budget_batches_equal_the_sentence_by_sentence_reference(seed, max_tokens, source_first):
    rng = random.Random(seed)
    count = rng.choice([1, 2, 50, 700])
    high = rng.choice([3, 40, 200])  # few distinct lengths give many ties, broken by the generator
    src = [rng.randint(0, high) for _ in range(count)]
    tgt = [rng.randint(0, high) for _ in range(count)]
    expected = _reference_budget_batches(src, tgt, max_tokens, source_first=source_first)
    assert token_budget_batches(src, tgt, max_tokens, source_first=source_first) == expected
    fresh = lambda: torch.Generator().manual_seed(seed)  # noqa: E731
    expected = _reference_budget_batches(src, tgt, max_tokens, fresh(), source_first)
    assert token_budget_batches(src, tgt, max_tokens, fresh(), source_first) == expected


def test_budget_batches_single_long_sentence_gets_own_batch():
    src = [2, 2, 50, 2]
    tgt = [2, 2, 2, 2]
    batches = token_budget_batches(src, tgt, 20)
    assert [2] in batches
    assert sorted(i for b in batches for i in b) == [0, 1, 2, 3]


# ---------------------------------------------------------------- TrainBatches


def _pairs() -> tuple[list[list[int]], list[list[int]]]:
    rng = random.Random(0)
    return random_ids(rng, 120, max_len=12), random_ids(rng, 120, max_len=12)


def _train_batches(seed: int = 11) -> TrainBatches:
    src, tgt = _pairs()
    return TrainBatches(datasets.Dataset.from_dict({"src_ids": src, "tgt_ids": tgt}), max_tokens=60, seed=seed)


def _same_batch(a, b) -> bool:
    return (
        torch.equal(a.src, b.src)
        and torch.equal(a.src_lengths, b.src_lengths)
        and torch.equal(a.tgt_in, b.tgt_in)
        and torch.equal(a.tgt_out, b.tgt_out)
        and torch.equal(a.indices, b.indices)
    )


@pytest.mark.parametrize("start", [0, 1, 5])
def test_train_batches_resume_skips_exactly_start(start):
    data = _train_batches()
    full = list(data.iterate(epoch=3))
    assert len(full) > 6
    assert [p for p, _ in full] == list(range(len(full)))
    resumed = list(data.iterate(epoch=3, start=start))
    assert [p for p, _ in resumed] == list(range(start, len(full)))
    for (_, a), (_, b) in zip(full[start:], resumed):
        assert _same_batch(a, b)
    # a fresh object with the same data and seed gives the same batches (a restarted process)
    again = list(_train_batches().iterate(epoch=3, start=start))
    assert all(_same_batch(a, b) for (_, a), (_, b) in zip(resumed, again))


def test_train_batches_start_past_end_yields_nothing():
    data = _train_batches()
    count = len(data.epoch_batches(0))
    assert list(data.iterate(0, start=count)) == []


def test_train_batches_epochs_and_seeds_differ():
    data = _train_batches()
    assert data.epoch_batches(0) != data.epoch_batches(1)
    assert data.epoch_batches(0) != _train_batches(seed=12).epoch_batches(0)
    # each epoch still covers the corpus exactly once
    for epoch in (0, 1):
        flat = sorted(i for b in data.epoch_batches(epoch) for i in b)
        assert flat == list(range(120))


def test_train_batches_batch_content_matches_indices():
    data = _train_batches()
    src_ids, tgt_ids = _pairs()
    _, batch = next(iter(data.iterate(0)))
    for row, index in enumerate(batch.indices.tolist()):
        src = src_ids[index]
        assert batch.src[row, : len(src)].tolist() == src
        assert int(batch.src_lengths[row]) == len(src) + 1
        tgt = tgt_ids[index]
        assert batch.tgt_out[row, : len(tgt) + 1].tolist() == tgt + [EOS]
    assert data.num_tokens == sum(len(t) + 1 for t in tgt_ids)


def test_train_batches_hold_lengths_as_arrays_and_match_plain_budget_batches():
    data = _train_batches()
    src_ids, tgt_ids = _pairs()
    assert data.src_lengths.dtype == np.int32 and data.src_lengths.tolist() == [len(s) for s in src_ids]
    assert data.tgt_lengths.dtype == np.int32 and data.tgt_lengths.tolist() == [len(t) for t in tgt_ids]
    generator = torch.Generator().manual_seed(11 * 100_003 + 2)  # how TrainBatches seeds epoch 2
    expected = token_budget_batches([len(s) for s in src_ids], [len(t) for t in tgt_ids], 60, generator)
    assert data.epoch_batches(2) == expected
    assert data.num_batches(2) == len(expected)
    plan = data.plan(2)  # the same batches, held compactly
    assert len(plan) == len(expected) and list(plan) == expected
    assert plan[3] == expected[3] and plan[-1] == expected[-1] and plan[1:9:3] == expected[1:9:3]
    assert [batch.indices.tolist() for _, batch in data.iterate(2)] == expected


def test_train_batches_read_through_a_filtered_dataset():
    # training pairs come out of Dataset.filter, whose rows are an index mapping over the Arrow table
    src, tgt = _pairs()
    full = datasets.Dataset.from_dict({"src_ids": src, "tgt_ids": tgt, "keep": [i % 3 != 0 for i in range(len(src))]})
    data = TrainBatches(full.filter(lambda keep: keep, input_columns="keep"), max_tokens=60, seed=1)
    kept = [i for i in range(len(src)) if i % 3 != 0]
    assert data.src_lengths.tolist() == [len(src[i]) for i in kept]
    for _, batch in data.iterate(0):
        for row, index in enumerate(batch.indices.tolist()):
            assert batch.tgt_out[row, : len(tgt[kept[index]])].tolist() == tgt[kept[index]]
