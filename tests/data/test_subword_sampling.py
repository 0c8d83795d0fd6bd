"""Subword regularization (s2s.data.subword_sampling): a new, reproducible segmentation of the training text
each epoch."""

from __future__ import annotations

import os

import pytest

from s2s.config import DataConfig, SubwordConfig, SubwordModel
from s2s.config_checks import check_data
from s2s.data.pipeline import prepare_training_data
from s2s.errors import S2SError
from tests.helpers import corpus_config, write_corpus


def _sampled_training_data(tmp_path, name: str, seed: int = 4, **subword):
    corpus, run_dir = tmp_path / "corpus", tmp_path / name
    if not corpus.exists():
        corpus.mkdir()
        write_corpus(corpus, lines=400)
    run_dir.mkdir()
    return prepare_training_data(corpus_config(corpus, **subword), str(run_dir), seed=seed)


def _epoch_rows(train, epoch: int) -> list[tuple[list[int], list[int]]]:
    """Every training pair's ids as the batches of `epoch` deliver them, in corpus order."""
    rows = {}
    for _, batch in train.iterate(epoch):
        for position, index in enumerate(batch.indices.tolist()):
            src = batch.src[position, : int(batch.src_lengths[position]) - 1].tolist()  # without EOS
            tgt = [i for i in batch.tgt_out[position].tolist() if i != 0][:-1]  # without padding and EOS
            rows[index] = (src, tgt)
    return [rows[i] for i in sorted(rows)]


@pytest.mark.slow
@pytest.mark.parametrize("model_type", [SubwordModel.unigram, SubwordModel.bpe])
def test_each_epoch_segments_the_same_text_differently(tmp_path, model_type):
    alpha = 0.3 if model_type == SubwordModel.unigram else 0.2
    data = _sampled_training_data(tmp_path, "run", sampling_alpha=alpha, model_type=model_type)
    best = _sampled_training_data(tmp_path, "best", model_type=model_type)  # same corpus and seed, no sampling
    tokenizers = data.tokenizers
    best_rows = _epoch_rows(best.train, 0)
    first, second = _epoch_rows(data.train, 0), _epoch_rows(data.train, 1)
    assert len(first) == len(second) == len(best_rows)  # no pair dropped or added
    for rows in (first, second):
        # other pieces, same text: every sampled segmentation decodes to what the best one decodes to
        assert [tokenizers.src.decode(s) for s, _ in rows] == [tokenizers.src.decode(s) for s, _ in best_rows]
        assert [tokenizers.tgt.decode(t) for _, t in rows] == [tokenizers.tgt.decode(t) for _, t in best_rows]
        changed = sum(row != best_row for row, best_row in zip(rows, best_rows))
        assert changed > len(rows) // 10  # small vocabulary of whole words: many pairs have one segmentation
    assert sum(a != b for a, b in zip(first, second)) > len(first) // 10
    # validation keeps the most likely segmentation
    assert [b.src.tolist() for b in data.valid.loss_batches] == [b.src.tolist() for b in best.valid.loss_batches]


@pytest.mark.slow
def test_sampling_is_reproducible_from_seed_and_epoch(tmp_path):
    one = _sampled_training_data(tmp_path, "one", sampling_alpha=0.3).train
    two = _sampled_training_data(tmp_path, "two", sampling_alpha=0.3).train
    assert _epoch_rows(one, 3) == _epoch_rows(two, 3)  # a resumed run or another rank sees the same epoch
    assert list(one.plan(3)) == list(two.plan(3))
    other_seed = _sampled_training_data(tmp_path, "other", seed=5, sampling_alpha=0.3).train
    assert _epoch_rows(other_seed, 3) != _epoch_rows(one, 3)


def test_batches_follow_the_lengths_of_the_sampled_segmentation(tmp_path):
    train = _sampled_training_data(tmp_path, "run", sampling_alpha=0.1).train  # strong sampling: long segmentations
    for epoch in (0, 1):
        plan = train.plan(epoch)
        rows = _epoch_rows(train, epoch)
        assert train.src_lengths.tolist() == [len(s) for s, _ in rows]
        assert train.tgt_lengths.tolist() == [len(t) for _, t in rows]
        # every side stays within max_len (30): over-long samples fall back to the best segmentation
        assert max(max(len(s), len(t)) for s, t in rows) <= 30
        assert all(
            len(b) * (max(max(train.src_lengths[i], train.tgt_lengths[i]) for i in b) + 1) <= 200
            for b in plan
            if len(b) > 1
        )


def test_each_epoch_writes_its_segmentation_to_the_temporary_arrow_directory(tmp_path):
    train = _sampled_training_data(tmp_path, "run", sampling_alpha=0.3).train
    train.plan(0)
    train.plan(1)
    names = {os.path.basename(f["filename"]) for f in train.pairs.cache_files}
    assert names == {"sampled1.arrow"}
    assert not os.path.dirname(train.pairs.cache_files[0]["filename"]).startswith(str(tmp_path))


@pytest.mark.parametrize(
    "alpha, model_type, message",
    [(-0.1, SubwordModel.unigram, "must be >= 0"), (1.0, SubwordModel.bpe, "BPE-dropout probability")],
)
def test_bad_sampling_strength_is_a_one_line_error(alpha, model_type, message):
    def check_alpha(value: float) -> None:
        check_data(DataConfig(subword=SubwordConfig(model_type=model_type, sampling_alpha=value)))

    with pytest.raises(S2SError, match=message):
        check_alpha(alpha)
    check_alpha(0.0)
    check_alpha(0.5)
