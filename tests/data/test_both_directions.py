"""One model trained in both directions (data.both_directions): tagged sources, swapped pairs, translation."""

from __future__ import annotations

import dataclasses
import io
import random

import pytest
import torch

from s2s.commands.train import run
from s2s.commands.translate import TranslateOptions, translate_stream
from s2s.config import CorpusFormat, DataConfig, SubwordConfig
from s2s.data.batching import make_batch
from s2s.data.pipeline import prepare_training_data
from s2s.data.subwords import direction_tag, train_tokenizers
from s2s.decoding.rerank import _batches, rerank, reverse_scores, sequence_log_probs
from s2s.decoding.search import decode
from s2s.decoding.translator import load_translator
from s2s.errors import S2SError
from s2s.precision import bf16_runs
from s2s.special_tokens import UNK
from tests.conftest import make_config
from tests.test_data import _write_corpus

# a word-for-word "language pair": every German word has one English word and back
LEXICON = {
    "der": "the",
    "Hund": "dog",
    "Katze": "cat",
    "läuft": "runs",
    "schläft": "sleeps",
    "rot": "red",
    "groß": "big",
    "klein": "small",
}


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
    to_en = tokenizers.toward("en")
    tag = tokenizers.src.piece_to_id("<2en>")
    assert (
        tag != UNK and to_en.src_prefix == (tag,) and tokenizers.src_prefix == ()
    )  # a copy; the original stays untagged
    assert to_en.encode_src(["der Hund", ""]) == [
        [tag, *plain[0]],
        [],
    ]  # blank stays blank (dropped or echoed as before)
    assert to_en.sample_src(["der Hund"], alpha=0.1)[0][0] == tag
    assert to_en.toward("de").src_prefix == (tokenizers.src.piece_to_id("<2de>"),)
    assert to_en.reverse_tag("de", both_directions=True) == (tokenizers.src.piece_to_id("<2de>"),)
    assert to_en.reverse_tag("de", both_directions=False) == ()  # a one-way model has no reverse direction
    assert tag in tokenizers.encode_src(["<2en> der Hund"])[0]  # one piece, never split
    with pytest.raises(S2SError, match="no <2fr> piece"):
        tokenizers.toward("fr")


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
    _write_corpus(corpus)
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


def test_a_reverse_fraction_swaps_a_seeded_random_share_of_the_pairs(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _write_corpus(corpus)
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
    _write_corpus(corpus, lines=40)
    with pytest.raises(S2SError, match=message):
        prepare_training_data(_config(corpus, **changes), str(tmp_path / "run"), seed=0)


def _write_lexicon_corpus(directory, rng: random.Random) -> list[tuple[str, str]]:
    german = list(LEXICON)
    pairs = []
    for _ in range(300):
        words = [rng.choice(german) for _ in range(rng.randint(2, 4))]
        pairs.append((" ".join(words), " ".join(LEXICON[w] for w in words)))
    for split, rows in (("train", pairs), ("valid", pairs[:8]), ("test", pairs[8:16])):
        (directory / f"{split}.de").write_text("".join(de + "\n" for de, _ in rows), encoding="utf-8")
        (directory / f"{split}.en").write_text("".join(en + "\n" for _, en in rows), encoding="utf-8")
    return pairs


@pytest.fixture(scope="module")
def two_way_run(tmp_path_factory) -> str:
    """A tiny model trained on the lexicon corpus in both directions, until it translates it exactly."""
    torch.set_num_threads(1)
    corpus = tmp_path_factory.mktemp("lexicon")
    _write_lexicon_corpus(corpus, random.Random(0))
    run_dir = str(tmp_path_factory.mktemp("two_way") / "run")
    run(
        make_config(
            "data.format=text",
            f"data.dir={corpus}",
            "data.src_lang=de",
            "data.tgt_lang=en",
            "data.both_directions=true",
            "data.subword.vocab_size=40",
            "data.max_tokens=400",
            "model.embedding_size=24",
            "model.encoder.hidden_size=24",
            "model.decoder.hidden_size=48",
            "model.embedding_dropout=0",
            "model.encoder.dropout=0",
            "model.decoder.dropout=0",
            "optim.lr=0.01",
            "optim.label_smoothing=0",
            "trainer.max_steps=400",
            "trainer.valid_every=200",
            "threads=1",
        ),
        run_dir,
    )
    return run_dir


def test_a_two_way_model_learns_both_directions_and_translates_toward_its_target(two_way_run):
    run_dir = two_way_run
    translator, cfg, _ = load_translator(run_dir, which="last", device="cpu")
    assert cfg.data.both_directions
    german, english = (
        ["der Hund läuft", "Katze schläft klein", "rot groß Katze"],
        ["the dog runs", "cat sleeps small", "red big cat"],
    )
    assert [t.text for t in translator.translate_detailed(german + [""])] == english + [""]  # toward data.tgt_lang
    assert translator.translate_detailed(["der Hund"])[0].src_pieces[0] != direction_tag(
        "en"
    )  # the tag is not shown as source text
    backward, reversed_cfg, _ = load_translator(run_dir, which="last", device="cpu", reverse=True)
    assert (reversed_cfg.data.src_lang, reversed_cfg.data.tgt_lang) == ("en", "de")
    pieces = translator.tokenizers.src
    assert translator.reverse_tag == (pieces.piece_to_id("<2de>"),) and backward.reverse_tag == (
        pieces.piece_to_id("<2en>"),
    )
    assert [t.text for t in backward.translate_detailed(english)] == german
    sink = io.StringIO()
    source = io.BytesIO("".join(line + "\n" for line in english).encode())
    translate_stream(
        TranslateOptions(run=run_dir, checkpoint="last", device="cpu", reverse=True),
        [],
        source,
        sink,
        log=io.StringIO(),
    )
    assert sink.getvalue().splitlines() == german


def test_reverse_translation_needs_a_two_way_model(trained_run):
    with pytest.raises(S2SError, match="reverse=true needs a model trained with data.both_directions=true"):
        load_translator(trained_run, device="cpu", reverse=True)


def test_teacher_forced_log_probs_equal_the_search_scores(two_way_run):
    translator, _, _ = load_translator(two_way_run, which="last", device="cpu")
    sources = ["der Hund läuft", "Katze schläft klein", "rot groß Katze", "Hund"]
    translator.search.beam_size, translator.search.n_best = 3, 3
    translator.search.length_penalty = 0.0  # beam scores are then plain log-probabilities
    cpu = torch.device("cpu")
    for source, ids in zip(sources, translator.tokenizers.encode_src(sources)):
        hypotheses = translator._search(make_batch([ids], None, [0]), [ids], translator.search, translator.generator)[0]
        forced = sequence_log_probs(translator.model, [ids] * len(hypotheses), [h.tokens for h in hypotheses], cpu)
        assert forced == pytest.approx([h.score for h in hypotheses], abs=1e-4)
    assert sequence_log_probs(translator.model, [[5, 6], []], [[], [7]], cpu) == [float("-inf")] * 2


def test_reverse_scores_are_the_source_log_prob_given_each_candidate_per_source_subword(two_way_run):
    translator, _, _ = load_translator(two_way_run, which="last", device="cpu")
    tokenizers, cpu = translator.tokenizers, torch.device("cpu")
    source = tokenizers.src.encode("der Hund läuft")
    faithful, wrong = tokenizers.tgt.encode(["the dog runs", "the cat runs"])
    back = reverse_scores(translator.model, [source, source], [[faithful, wrong], [[]]], translator.reverse_tag, cpu)
    to_de = tokenizers.toward("de").src_prefix
    assert translator.reverse_tag == to_de
    direct = sequence_log_probs(translator.model, [[*to_de, *faithful], [*to_de, *wrong]], [source, source], cpu)
    assert back[0] == pytest.approx([d / (len(source) + 1) for d in direct]) and back[1] == [float("-inf")]
    assert back[0][0] > back[0][1]  # the faithful candidate explains the source better


def test_scoring_batches_keep_the_order_and_the_logits_budget():
    lengths = [3, 1, 4, 1, 5, 9, 2, 6]
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches = _batches(lengths, order, vocabulary=10, max_logits=200)
    assert [i for b in batches for i in b] == order
    assert all(len(b) * (max(lengths[i] for i in b) + 1) * 10 <= 200 for b in batches if len(b) > 1)
    assert len(batches) < len(order)  # short targets share a batch
    assert _batches([100], [0], vocabulary=10, max_logits=200) == [[0]]  # one pair over the budget still gets its batch


def test_rerank_adds_the_weighted_reverse_score_and_keeps_the_beam_order_on_ties():
    beam, back = [[-1.0, -1.5, -3.0], [-2.0, -2.0]], [[-2.0, -0.5, -0.1], [float("-inf"), -1.0]]
    assert rerank(beam, back, 0.0) == [[0, 1, 2], [0, 1]]
    assert rerank(beam, back, 1.0) == [[1, 0, 2], [1, 0]]  # -3.0, -2.0, -3.1 ; -inf, -3.0
    assert rerank(beam, back, 100.0) == [[2, 1, 0], [1, 0]]


def test_translator_reranks_the_whole_beam_by_the_reverse_score(two_way_run):
    translator, _, _ = load_translator(
        two_way_run, which="last", device="cpu", search_overrides=["beam_size=4", "n_best=2"]
    )
    sources = ["der Hund läuft", "Katze schläft klein", ""]
    plain = translator.translate_detailed(sources)
    translator.search.reverse_weight = 1.0
    reranked = translator.translate_detailed(sources)
    assert [len(t.n_best) for t in reranked] == [2, 2, 1] and reranked[2].text == ""
    assert [t.text for t in reranked[:2]] == [t.text for t in plain[:2]] == ["the dog runs", "cat sleeps small"]
    ids = translator.tokenizers.encode_src(sources[:1])
    whole = dataclasses.replace(translator.search, n_best=4, reverse_weight=0.0)
    beam = decode(translator.model, make_batch(ids, None, [0]), whole, translator.generator)[0]
    back = reverse_scores(
        translator.model, [ids[0][1:]], [[h.tokens for h in beam]], translator.reverse_tag, torch.device("cpu")
    )[0]
    expected = sorted(b.score + r for b, r in zip(beam, back))[::-1][:2]
    assert [score for _, score in reranked[0].n_best] == pytest.approx(expected)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reranking_runs_with_reduced_precision_weights(two_way_run, precision):
    if precision == "bf16" and not bf16_runs(torch.device("cpu")):
        pytest.skip("this CPU has no bf16 kernels")
    translator, _, _ = load_translator(
        two_way_run,
        which="last",
        device="cpu",
        search_overrides=["beam_size=4", f"precision={precision}", "reverse_weight=1"],
    )
    assert [t.text for t in translator.translate_detailed(["der Hund läuft", "Katze schläft klein"])] == [
        "the dog runs",
        "cat sleeps small",
    ]


@pytest.mark.parametrize(
    "override, message",
    [
        ("reverse_weight=-1", "must be >= 0"),
        ("reverse_weight=1", "needs a model trained with data.both_directions=true"),
    ],
)
def test_bad_reverse_weights_are_rejected(trained_run, override, message):
    with pytest.raises(S2SError, match=message):
        load_translator(trained_run, device="cpu", search_overrides=[override, "beam_size=3"])
