"""The one translate-and-score path (s2s.decoding.scoring): chunks in order, whole sentences, lowercased references."""

from __future__ import annotations

import pytest

from s2s.config import SearchConfig
from s2s.decoding.scoring import CHUNK_BATCHES, translate_and_score


class EchoTranslator:
    """Stands in for a Translator: 'translates' by echoing the source, lowercased like a lowercase model."""

    def __init__(self, lowercase: bool, batch_size: int = 2):
        self.lowercase, self.search, self.calls = lowercase, SearchConfig(batch_size=batch_size), []

    def translate(self, sentences: list[str], **options) -> list[str]:
        self.calls.append((len(sentences), options))
        return [s.lower() if self.lowercase else s for s in sentences]


SENTENCES = [f"A Dog named Rex number {i} Runs" for i in range(37)]


def test_a_lowercase_model_is_scored_against_lowercased_references():
    hypotheses, metrics = translate_and_score(EchoTranslator(lowercase=True), SENTENCES, SENTENCES)
    assert hypotheses == [s.lower() for s in SENTENCES]
    assert metrics["bleu"] == 100.0 and metrics["exact_match"] == 100.0  # cased references would not match


def test_a_cased_model_keeps_the_references_as_they_are():
    _, metrics = translate_and_score(EchoTranslator(lowercase=False), SENTENCES, [s.lower() for s in SENTENCES])
    assert metrics["exact_match"] == 0.0 and metrics["bleu_lc"] == 100.0


def test_sentences_go_in_chunks_in_order_whole_and_with_the_callers_options():
    translator = EchoTranslator(lowercase=False, batch_size=2)
    hypotheses, _ = translate_and_score(translator, SENTENCES, SENTENCES, beam_size=3)
    assert hypotheses == SENTENCES
    chunk = CHUNK_BATCHES * 2
    assert [n for n, _ in translator.calls] == [chunk, chunk, len(SENTENCES) - 2 * chunk]
    assert all(options == {"max_input_tokens": None, "beam_size": 3} for _, options in translator.calls)


def test_a_batch_size_option_sets_the_chunk_size():
    translator = EchoTranslator(lowercase=False, batch_size=2)
    translate_and_score(translator, SENTENCES, SENTENCES, batch_size=1)
    assert translator.calls[0][0] == CHUNK_BATCHES * 1


def test_sources_and_references_must_pair_up():
    with pytest.raises(ValueError, match="3 sources but 2 references"):
        translate_and_score(EchoTranslator(lowercase=False), ["a", "b", "c"], ["a", "b"])
