"""Input text made safe to translate (s2s.data.text): one line per input line, long lines split at sentence ends."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from s2s.data.text import clean, split_spans
from tests.helpers import CHARACTERS


def test_clean_blanks_every_line_breaker_but_keeps_tabs_and_text():
    for breaker in [
        "\n",
        "\r",
        "\x0b",
        "\x0c",
        "\x1c",
        "\x1d",
        "\x1e",
        "\x85",
        "\u2028",
        "\u2029",
        "\x00",
        "\x1b",
        "\x7f",
        "\x9f",
    ]:
        assert clean(f"a{breaker}b") == "a b", repr(breaker)
    assert clean("a\tb 日本 😀 é") == "a\tb 日本 😀 é"
    assert clean("a\ud800b") == "a\ufffdb"


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=CHARACTERS))
def test_cleaned_text_is_one_line(text):
    assert len(clean(text).splitlines()) <= 1


def test_split_spans_prefers_sentence_ends_and_covers_everything():
    pieces = ["▁a", "b", ".", "▁c", "▁d", "!", "▁e", "f", "g", "h", "i", "j"]
    assert split_spans(pieces, 5) == [(0, 3), (3, 6), (6, 11), (11, 12)]  # after '.', after '!', then hard cuts
    assert split_spans(pieces, 20) == [(0, 12)]
    assert split_spans(["▁1", ".", "5"], 2) == [(0, 2), (2, 3)]  # '.' inside a number is no sentence end: hard cut


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(["▁a", "b", ".", "▁.", "!", "▁c?"]), max_size=40), st.integers(1, 8))
def test_split_spans_are_consecutive_and_short_enough(pieces, limit):
    spans = split_spans(pieces, limit)
    assert spans[0][0] == 0 and spans[-1][1] == len(pieces)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert all(0 < end - start <= limit for start, end in spans) or pieces == []
