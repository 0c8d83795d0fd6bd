"""Training data from local files (s2s.data.pipeline): encoding, filtering, the bounded sentencepiece sample,
batches."""

from __future__ import annotations

import gc
import logging
import os
import tracemalloc

import pytest
import sentencepiece as spm

from s2s.config import SortFirst
from s2s.data import subwords
from s2s.data.corpus import load_split
from s2s.data.pipeline import iter_texts, prepare_training_data
from tests.helpers import corpus_config, write_corpus


def test_encoded_pairs_and_counts_equal_a_direct_sentencepiece_encode(tmp_path, caplog):
    corpus, run_dir = tmp_path / "corpus", tmp_path / "run"
    corpus.mkdir()
    run_dir.mkdir()
    src, tgt = write_corpus(corpus)
    with caplog.at_level(logging.INFO, logger="s2s.data.pipeline"):
        data = prepare_training_data(corpus_config(corpus), str(run_dir), seed=3)

    processor = spm.SentencePieceProcessor(model_file=str(run_dir / "spm.model"))
    expected, empty, too_long = [], 0, 0
    for s, t in zip(processor.encode(src), processor.encode(tgt)):
        if not s or not t:
            empty += 1
        elif len(s) > 30 or len(t) > 30:
            too_long += 1
        else:
            expected.append((s, t))
    assert empty > 0 and too_long > 0  # the corpus exercises both filters
    assert data.counts == {
        "read": len(src),
        "dropped_empty": empty,
        "dropped_too_long": too_long,
        "kept": len(expected),
    }
    rows = data.train.pairs[:]
    assert list(zip(rows["src_ids"], rows["tgt_ids"])) == expected
    assert data.train.src_lengths.tolist() == [len(s) for s, _ in expected]
    assert (
        f"{len(src)} pairs read, {empty} dropped (empty side), "
        f"{too_long} dropped (longer than 30 subwords), {len(expected)} kept" in caplog.text
    )

    # the validation split stays in memory and still gives loss batches
    assert data.valid.sources == ["das Haus", "der Hund läuft"]
    assert sorted(i for b in data.valid.loss_batches for i in b.indices.tolist()) == [0, 1]


def test_training_ids_live_in_memory_mapped_arrow_files_that_go_with_the_batches(tmp_path):
    corpus, run_dir = tmp_path / "corpus", tmp_path / "run"
    corpus.mkdir()
    run_dir.mkdir()
    write_corpus(corpus, lines=120)
    data = prepare_training_data(corpus_config(corpus), str(run_dir), seed=0)
    files = [f["filename"] for f in data.train.pairs.cache_files]
    assert files and all(os.path.isfile(f) for f in files)
    assert data.train.pairs.features["src_ids"].feature.dtype == "uint16"
    workdir = os.path.dirname(files[0])
    assert not workdir.startswith(str(tmp_path))  # a temporary directory, not the run directory
    del data
    gc.collect()
    assert not os.path.exists(workdir)


@pytest.mark.parametrize("epoch", [0, 1, 5])
def test_batches_cover_every_kept_pair_once_per_epoch(tmp_path, epoch):
    corpus, run_dir = tmp_path / "corpus", tmp_path / "run"
    corpus.mkdir()
    run_dir.mkdir()
    write_corpus(corpus)
    train = prepare_training_data(corpus_config(corpus), str(run_dir), seed=1).train
    kept = len(train.src_lengths)
    seen = [i for _, batch in train.iterate(epoch) for i in batch.indices.tolist()]
    assert sorted(seen) == list(range(kept))
    assert sorted(i for b in train.epoch_batches(epoch) for i in b) == list(range(kept))
    assert all(
        len(b) * (max(max(train.src_lengths[i], train.tgt_lengths[i]) for i in b) + 1) <= 200
        for b in train.epoch_batches(epoch)
        if len(b) > 1
    )


def test_sort_first_chooses_which_side_groups_the_training_batches(tmp_path):
    corpus, run_dir = tmp_path / "corpus", tmp_path / "run"
    corpus.mkdir()
    run_dir.mkdir()
    write_corpus(corpus, lines=400)

    def spread(train, lengths) -> int:  # summed length range inside the batches of epoch 0
        return sum(int(lengths[b].max() - lengths[b].min()) for b in train.epoch_batches(0))

    by_target = prepare_training_data(corpus_config(corpus), str(run_dir / "t"), seed=1).train
    config = corpus_config(corpus)
    config.sort_first = SortFirst.source
    by_source = prepare_training_data(config, str(run_dir / "s"), seed=1).train
    assert spread(by_target, by_target.tgt_lengths) < spread(by_target, by_target.src_lengths)
    assert spread(by_source, by_source.src_lengths) < spread(by_source, by_source.tgt_lengths)
    assert sorted(by_source.epoch_batches(0)) != sorted(by_target.epoch_batches(0))


def test_reservoir_sample_never_holds_more_than_the_limit():
    made = 0

    def sentences():
        nonlocal made
        for number in range(20_000):
            made += 1
            yield f"sentence number {number} with a few more words in it"

    tracemalloc.start()
    sample = subwords._sample(sentences(), limit=100, seed=0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert made == 20_000 and len(sample) == 100
    assert peak < 100_000  # ~100 kept strings; the 20,000 sentences would need well over 1 MB
    assert len(subwords._sample(["a", " ", "b"], limit=100, seed=0)) == 2  # blank sentences are skipped


def test_sentencepiece_learns_from_a_bounded_sample_read_in_batches(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    src, _ = write_corpus(corpus)
    trained_on = []
    train_one = subwords._train_one
    monkeypatch.setattr(
        subwords,
        "_train_one",
        lambda sentences, *args: trained_on.append(len(sentences)) or train_one(sentences, *args),
    )
    prepare_training_data(corpus_config(corpus, max_sentences=25), str(tmp_path / "joint"), seed=0)
    prepare_training_data(corpus_config(corpus, max_sentences=25, joint=False), str(tmp_path / "separate"), seed=0)
    assert trained_on == [25, 25, 25]

    train = load_split(corpus_config(corpus), "train")
    assert list(iter_texts(train, "src", batch_size=7)) == src
