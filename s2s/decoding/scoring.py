"""Translating a whole split and scoring it: validation during training, `s2s.evaluate`, search sweeps."""

from __future__ import annotations

from tqdm import tqdm
from typing_extensions import Unpack

from s2s.decoding.options import DecodingOptions
from s2s.decoding.translator import Translator
from s2s.metrics import score

CHUNK_BATCHES = 8  # decoding batches per chunk: the progress bar moves, and each chunk sorts by length on its own


def translate_and_score(
    translator: Translator,
    sources: list[str],
    references: list[str],
    *,
    moses_lang: str | None = None,
    description: str = "translate",
    progress_bar: bool = True,
    **options: Unpack[DecodingOptions],
) -> tuple[list[str], dict]:
    """Translate `sources` whole and score them against `references`; returns (hypotheses, metrics).

    Sentences are never cut (`max_input_tokens=None`): a score covers whole sentences. A model
    trained on lowercased text (`data.lowercase`) writes lowercase, so its references are
    lowercased too before scoring. `progress_bar` shows a bar on a terminal (never in a log file); `options`
    are the per-call decoding options of `Translator.translate` (beam_size=5, ...).
    """
    if len(sources) != len(references):
        raise ValueError(f"{len(sources)} sources but {len(references)} references")
    chunk = CHUNK_BATCHES * options.get("batch_size", translator.search.batch_size)
    hypotheses: list[str] = []
    disable = None if progress_bar else True  # None: tqdm shows the bar only on a terminal
    for start in tqdm(range(0, len(sources), chunk), desc=description, unit="chunk", leave=False, disable=disable):
        hypotheses += translator.translate(sources[start : start + chunk], max_input_tokens=None, **options)
    if translator.lowercase:
        references = [r.lower() for r in references]
    return hypotheses, score(hypotheses, references, moses_lang=moses_lang)
