"""Constrained beam search: every placeable phrase appears, the prefix is kept, avoided phrases never appear."""

from __future__ import annotations

import functools
import random

import pytest
import torch

from s2s.config import SearchConfig
from s2s.data.batching import make_batch
from s2s.decoding.constraints import SentenceConstraints, _advance, encode_constraints
from s2s.decoding.search import beam_search, decode
from s2s.errors import S2SError
from s2s.model.ensemble import Ensemble
from tests.helpers import VOCAB, half_trained_model, random_ids, sequence_log_prob, train_tokenizer

SOURCES = random_ids(random.Random(4), 6, min_len=3, max_len=7)


@functools.lru_cache(maxsize=None)
def _trained(seed: int = 0, **kwargs) -> torch.nn.Module:
    """half_trained_model, trained once per module: decoding never changes it."""
    return half_trained_model(seed=seed, **kwargs)


def _contains(tokens: list[int], phrase: list[int]) -> bool:
    return any(tokens[i : i + len(phrase)] == phrase for i in range(len(tokens) - len(phrase) + 1))


def _decode(model, sources, constraints, **search):
    cfg = SearchConfig(**{"beam_size": 4, **search})
    return decode(model, make_batch(sources, None, range(len(sources))), cfg, constraints=constraints)


def _random_constraints(seed: int) -> list[SentenceConstraints]:
    rng = random.Random(seed)
    return [
        SentenceConstraints(include=random_ids(rng, rng.randint(0, 3), min_len=1, max_len=3, vocab=VOCAB))
        for _ in SOURCES
    ]


@pytest.mark.parametrize("beam", [1, 4])
def test_every_constraint_appears(beam):
    model = _trained()
    constraints = _random_constraints(seed=beam)
    assert sum(len(c.include) for c in constraints) >= 6
    for n_best, wanted in zip(_decode(model, SOURCES, constraints, beam_size=beam), constraints):
        best = n_best[0]
        assert best.unmet == ()
        for phrase in wanted.include:
            assert _contains(best.tokens, phrase), (best.tokens, phrase)


def test_constrained_decoding_in_batches_equals_one_by_one():
    model = _trained()
    constraints = _random_constraints(seed=7)
    constraints[0].prefix = [9, 10]
    constraints[1].avoid = [[11]]
    together = _decode(model, SOURCES, constraints, n_best=2)
    for i, (source, wanted) in enumerate(zip(SOURCES, constraints)):
        alone = _decode(model, [source], [wanted], n_best=2)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[i]]
        assert [h.score for h in alone] == pytest.approx([h.score for h in together[i]], abs=1e-4)


def test_the_prefix_is_kept_and_scored_as_a_log_probability():
    model = _trained()
    prefixes = [[7, 8], [12], [5, 5, 5], [], [15, 16, 17, 18], [6]]
    constraints = [SentenceConstraints(prefix=p) for p in prefixes]
    for source, n_best, prefix in zip(SOURCES, _decode(model, SOURCES, constraints, length_penalty=0.0), prefixes):
        best = n_best[0]
        assert best.tokens[: len(prefix)] == prefix
        assert best.score == pytest.approx(sequence_log_prob(model, source, best.tokens), abs=1e-4)


def test_avoided_phrases_never_appear():
    model = _trained()
    plain = _decode(model, SOURCES, None)
    # avoid what the unconstrained search wrote: its first token, and its first two tokens as a phrase
    avoided = [[h[0].tokens[:1], h[0].tokens[1:3]] for h in plain]
    constraints = [SentenceConstraints(avoid=[a for a in pair if a]) for pair in avoided]
    for n_best, banned in zip(_decode(model, SOURCES, constraints, n_best=4), constraints):
        assert n_best[0].tokens  # something else was written
        for hypothesis in n_best:
            for phrase in banned.avoid:
                assert not _contains(hypothesis.tokens, phrase)


def test_an_unplaceable_constraint_is_reported_and_the_best_translation_still_returned():
    model = _trained()
    # the phrase contains an avoided token: it can never be written
    constraints = [SentenceConstraints(include=[[9, 10], [14]], avoid=[[10]])] + [SentenceConstraints()] * 5
    result = _decode(model, SOURCES, constraints, max_len_a=0.0, max_len_b=6)
    assert result[0][0].unmet == (0,)
    assert _contains(result[0][0].tokens, [14]) and 10 not in result[0][0].tokens


def test_sentences_without_constraints_decode_as_plain_beam_search():
    model = _trained()
    constraints = [SentenceConstraints(include=[[9, 10]])] + [SentenceConstraints()] * 5
    constrained = _decode(model, SOURCES, constraints, n_best=3)
    plain = _decode(model, SOURCES, None, n_best=3)
    for got, want in zip(constrained[1:], plain[1:]):
        assert [h.tokens for h in got] == [h.tokens for h in want]
        assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-5)
    assert _contains(constrained[0][0].tokens, [9, 10])


def test_constraints_work_with_an_ensemble():
    ensemble = Ensemble([_trained(seed=0), _trained(seed=1)])
    constraints = _random_constraints(seed=3)
    for n_best, wanted in zip(_decode(ensemble, SOURCES, constraints), constraints):
        assert all(_contains(n_best[0].tokens, p) for p in wanted.include)


def test_constraints_need_search_not_sampling():
    with pytest.raises(S2SError, match="not sampling"):
        _decode(_trained(), SOURCES, _random_constraints(1), sampling=True, beam_size=1)


def test_phrase_tracking_handles_overlaps_and_restarts():
    """'a a b' inside 'a a a b': a naive matcher that restarts at the first mismatch misses it."""
    phrase = torch.tensor([[[1, 1, 2]]])  # (1, 1, 3)
    matched = torch.zeros(1, 1, 4, dtype=torch.bool)
    matched[..., 0] = True
    for token in [1, 1, 1, 2]:
        matched = _advance(matched, phrase, torch.tensor([token]))
    assert bool(matched[0, 0, 3])


def test_beam_search_without_constraints_is_unchanged_by_the_constraint_path():
    model = _trained()
    batch = make_batch(SOURCES, None, range(len(SOURCES)))
    cfg = SearchConfig(beam_size=4, n_best=4)
    empty = [SentenceConstraints()] * len(SOURCES)
    assert [[h.tokens for h in n] for n in beam_search(model, batch, cfg)] == [
        [h.tokens for h in n] for n in decode(model, batch, cfg, constraints=empty)
    ]


def test_phrases_are_encoded_as_words_and_avoided_in_every_likely_segmentation(tmp_path):
    tokenizer = train_tokenizer(tmp_path, "words", 60)
    lines = encode_constraints(tokenizer, 2, [["Hund läuft"], []], ["Der Hund", None], [[], ["Katze"]], lowercase=False)
    assert lines[0].include == [tokenizer.encode("Hund läuft")]
    assert lines[0].prefix == tokenizer.encode("Der Hund") and lines[1].prefix == []
    banned = lines[1].avoid
    assert banned[0] == tokenizer.encode("Katze") and len(banned) > 1  # the best split first, then others
    assert all(tokenizer.decode(ids) == "Katze" for ids in banned) and len({tuple(b) for b in banned}) == len(banned)
    lowered = encode_constraints(tokenizer, 1, [["Hund"]], None, None, lowercase=True)
    assert lowered[0].include == [tokenizer.encode("hund")]
    assert encode_constraints(tokenizer, 2, None, None, None, lowercase=False) is None
