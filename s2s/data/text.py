"""Raw input made safe to translate: decode a line, blank out control characters, cut long subword sequences.

`s2s.translate` promises one output line per input line for any bytes at all;
these functions are the parts of that promise that look at the text itself.
"""

from __future__ import annotations

import re

from s2s.errors import S2SError

# C0 and C1 control characters (tab excepted) and the Unicode line and paragraph separators.
# Each could end a line for some reader (str.splitlines breaks at \x0b \x0c \x1c-\x1e \x85
# \u2028 \u2029) or reach sentencepiece as a character it never saw; a space is harmless.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
# Lone surrogates cannot come from UTF-8 input, but a str from Python code may hold them,
# and sentencepiece would fail to encode such a string.
_SURROGATE = re.compile("[\ud800-\udfff]")

# A piece ending in one of these and followed by a new word ends a sentence (a place to cut a long line).
SENTENCE_END = (".", "!", "?", ";", ":", "。", "！", "？", "；", "：")
WORD_START = "▁"  # sentencepiece's mark for a piece that begins a word


def decode_line(raw: bytes, number: int, replace_invalid: bool) -> str:
    """One input line as text, without its '\\n' or '\\r\\n'.

    Bytes that are not UTF-8 are an S2SError naming the 1-based line `number`, or,
    with `replace_invalid`, become U+FFFD.
    """
    try:
        text = raw.decode("utf-8", errors="replace" if replace_invalid else "strict")
    except UnicodeDecodeError as error:
        bad = raw[error.start : error.start + 1]
        raise S2SError(
            f"input line {number} is not valid UTF-8 (byte {error.start}: {bad!r}); "
            "use --on-invalid-utf8 replace to translate it anyway"
        ) from None
    return text.removesuffix("\n").removesuffix("\r")


def clean(text: str) -> str:
    """Control characters and line separators become spaces, lone surrogates U+FFFD; nothing else changes."""
    return _SURROGATE.sub("\ufffd", _CONTROL.sub(" ", text))


def split_spans(pieces: list[str], limit: int) -> list[tuple[int, int]]:
    """Cut a sequence of subword pieces into consecutive [start, end) spans of at most `limit` pieces.

    A span ends after the last sentence end (SENTENCE_END before a new word) in its
    window when there is one, so each part is a sentence or a few; else it is cut
    hard at the limit, possibly inside a word.
    """
    if limit < 1:
        raise S2SError(f"max_input_tokens must be at least 1, got {limit}")
    spans = []
    start = 0
    while len(pieces) - start > limit:
        end = start + limit
        for i in range(start + limit - 1, start - 1, -1):
            if _ends_sentence(pieces, i):
                end = i + 1
                break
        spans.append((start, end))
        start = end
    spans.append((start, len(pieces)))
    return spans


def _ends_sentence(pieces: list[str], i: int) -> bool:
    return pieces[i].endswith(SENTENCE_END) and (i + 1 == len(pieces) or pieces[i + 1].startswith(WORD_START))
