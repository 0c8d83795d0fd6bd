"""Training data in both directions (data.both_directions): tagged sources, swapped pairs, settings a two-way
model cannot have."""

from __future__ import annotations

import dataclasses

import pytest

from s2s.config import CorpusFormat, DataConfig, SubwordConfig
from s2s.data.pipeline import prepare_training_data
from s2s.data.subwords import direction_tag, train_tokenizers
from s2s.errors import S2SError
from s2s.special_tokens import UNK
from tests.helpers import write_corpus


def _config(directory, **changes) -> DataConfig:
    settings = {"src_lang": "de", "tgt_lang": "en", **changes}
    subword = SubwordConfig(vocab_size=60, **settings.pop("subword", {}))
    return DataConfig(
        name="t",
        format=CorpusFormat.text,
        dir=str(directory),
        max_len=30,
        max_tokens=200,
        subword=subword,
        both_directions=True,
        **settings,
    )


def test_toward_puts_the_language_tag_before_every_non_empty_source(tmp_path):
    texts = ["der Hund läuft", "die Katze", "rot und blau"] * 20
    tokenizers = train_tokenizers(texts, texts, SubwordConfig(vocab_size=40), str(tmp_path), symbols=["<2de>", "<2en>"])
    plain = tokenizers.encode_src(["der Hund", ""])
    to_en = tokenizers.for_target("en")
    tag = tokenizers.src.piece_to_id("<2en>")
    assert (
        tag != UNK and to_en.src_prefix == (tag,) and tokenizers.src_prefix == ()
    )  # a copy; the original stays untagged
    assert to_en.encode_src(["der Hund", ""]) == [
        [tag, *plain[0]],
        [],
    ]  # blank stays blank (dropped or echoed as before)
    assert to_en.sample_src(["der Hund"], alpha=0.1)[0][0] == tag
    assert to_en.for_target("de").src_prefix == (tokenizers.src.piece_to_id("<2de>"),)
    assert to_en.reverse_tag("de", both_directions=True) == (tokenizers.src.piece_to_id("<2de>"),)
    assert to_en.reverse_tag("de", both_directions=False) == ()  # a one-way model has no reverse direction
    assert tag in tokenizers.encode_src(["<2en> der Hund"])[0]  # one piece, never split
    with pytest.raises(S2SError, match="no <2fr> piece"):
        tokenizers.for_target("fr")


def _directions(data) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The (German, English) texts of the forward and of the swapped training rows."""
    sp = data.tokenizers.src
    to_en, to_de = sp.piece_to_id(direction_tag("en")), sp.piece_to_id(direction_tag("de"))
    rows = data.train.pairs[:]
    pairs = list(zip(rows["src_ids"], rows["tgt_ids"]))
    return [(sp.decode(s[1:]), sp.decode(t)) for s, t in pairs if s[0] == to_en], [
        (sp.decode(t), sp.decode(s[1:])) for s, t in pairs if s[0] == to_de
    ]


def test_training_data_holds_each_pair_in_both_directions_with_its_tag(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_corpus(corpus)
    one_way = prepare_training_data(
        dataclasses.replace(_config(corpus), both_directions=False), str(tmp_path / "one_way"), seed=3
    )
    data = prepare_training_data(_config(corpus), str(tmp_path / "run"), seed=3)

    to_en = data.tokenizers.src.piece_to_id(direction_tag("en"))
    assert data.tokenizers.src_prefix == (to_en,)  # validation and translation go de -> en
    forward, reverse = _directions(data)
    assert len(forward) + len(reverse) == len(data.train.pairs) == data.counts["kept"]
    expected = one_way.train.pairs[:]
    plain = sorted(
        (one_way.tokenizers.src.decode(s), one_way.tokenizers.tgt.decode(t))
        for s, t in zip(expected["src_ids"], expected["tgt_ids"])
    )
    assert sorted(forward) == sorted(reverse) == plain  # the same kept pairs, once each way
    assert data.counts["read"] == 2 * one_way.counts["read"]
    assert all(batch.src[:, 0].eq(to_en).all() for batch in data.valid.loss_batches)  # validation: de -> en only
    kept = len(data.train.pairs)
    assert sorted(i for _, batch in data.train.iterate(0) for i in batch.indices.tolist()) == list(range(kept))


@pytest.mark.slow
def test_a_reverse_fraction_swaps_a_seeded_random_share_of_the_pairs(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_corpus(corpus)
    forward, reverse = _directions(
        prepare_training_data(_config(corpus, reverse_fraction=0.4), str(tmp_path / "a"), seed=3)
    )
    assert set(reverse) < set(forward)  # each swapped pair is also there forward
    assert 0.3 * len(forward) < len(reverse) < 0.5 * len(forward)
    _, again = _directions(prepare_training_data(_config(corpus, reverse_fraction=0.4), str(tmp_path / "b"), seed=3))
    _, other = _directions(prepare_training_data(_config(corpus, reverse_fraction=0.4), str(tmp_path / "c"), seed=4))
    assert again == reverse and set(other) != set(reverse)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"reverse_fraction": 0.0}, r"data.reverse_fraction must be in \(0, 1\]"),
        ({"reverse_fraction": 1.5}, r"data.reverse_fraction must be in \(0, 1\]"),
        ({"subword": {"joint": False}}, "needs one joint vocabulary"),
        ({"src_lang": "en"}, "needs two languages"),
        ({"subword": {"sampling_alpha": 0.3}}, "does not support subword sampling"),
    ],
)
def test_settings_a_two_way_model_cannot_have_are_rejected(tmp_path, changes, message):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_corpus(corpus, lines=40)
    with pytest.raises(S2SError, match=message):
        prepare_training_data(_config(corpus, **changes), str(tmp_path / "run"), seed=0)
