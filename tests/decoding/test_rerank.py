"""A model trained in both directions translates toward either side, and reranks a beam by the reverse
direction's score (s2s.decoding.rerank)."""

from __future__ import annotations

import dataclasses
import io
import math
import random

import pytest
import torch

from s2s.commands.train import run
from s2s.commands.translate import TranslateOptions, translate_stream
from s2s.data.batching import make_batch
from s2s.data.subwords import direction_tag
from s2s.decoding.forced import length_batches, sequence_log_probs
from s2s.decoding.loading import load_translator
from s2s.decoding.rerank import rerank, reverse_scores
from s2s.decoding.search import decode
from s2s.errors import S2SError
from s2s.precision import bf16_runs
from tests.conftest import make_config

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


@pytest.mark.slow
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
        TranslateOptions(model=[run_dir], checkpoint="last", device="cpu", reverse=True),
        [],
        source,
        sink,
        log=io.StringIO(),
    )
    assert sink.getvalue().splitlines() == german


@pytest.mark.slow
def test_reverse_translation_needs_a_two_way_model(trained_run):
    with pytest.raises(S2SError, match="reverse=true needs a model trained with data.both_directions=true"):
        load_translator(trained_run, device="cpu", reverse=True)


@pytest.mark.slow
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
    # an empty target is EOS alone; an empty source reads nothing and scores -inf
    eos_only, unread = sequence_log_probs(translator.model, [[5, 6], []], [[], [7]], cpu)
    assert math.isfinite(eos_only) and eos_only < 0 and unread == float("-inf")


@pytest.mark.slow
def test_reverse_scores_are_the_source_log_prob_given_each_candidate_per_source_subword(two_way_run):
    translator, _, _ = load_translator(two_way_run, which="last", device="cpu")
    tokenizers, cpu = translator.tokenizers, torch.device("cpu")
    source = tokenizers.src.encode("der Hund läuft")
    faithful, wrong = tokenizers.tgt.encode(["the dog runs", "the cat runs"])
    back = reverse_scores(translator.model, [source, source], [[faithful, wrong], [[]]], translator.reverse_tag, cpu)
    to_de = tokenizers.for_target("de").src_prefix
    assert translator.reverse_tag == to_de
    direct = sequence_log_probs(translator.model, [[*to_de, *faithful], [*to_de, *wrong]], [source, source], cpu)
    assert back[0] == pytest.approx([d / (len(source) + 1) for d in direct]) and back[1] == [float("-inf")]
    assert back[0][0] > back[0][1]  # the faithful candidate explains the source better


def test_scoring_batches_keep_the_order_and_the_logits_budget():
    lengths = [3, 1, 4, 1, 5, 9, 2, 6]
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches = length_batches(lengths, order, vocabulary=10, max_logits=200)
    assert [i for b in batches for i in b] == order
    assert all(len(b) * (max(lengths[i] for i in b) + 1) * 10 <= 200 for b in batches if len(b) > 1)
    assert len(batches) < len(order)  # short targets share a batch
    # one pair over the budget still gets its batch
    assert length_batches([100], [0], vocabulary=10, max_logits=200) == [[0]]


def test_rerank_adds_the_weighted_reverse_score_and_keeps_the_beam_order_on_ties():
    beam, back = [[-1.0, -1.5, -3.0], [-2.0, -2.0]], [[-2.0, -0.5, -0.1], [float("-inf"), -1.0]]
    assert rerank(beam, back, 0.0) == [[0, 1, 2], [0, 1]]
    assert rerank(beam, back, 1.0) == [[1, 0, 2], [1, 0]]  # -3.0, -2.0, -3.1 ; -inf, -3.0
    assert rerank(beam, back, 100.0) == [[2, 1, 0], [1, 0]]


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
