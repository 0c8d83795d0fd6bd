"""Corpus-level scores with sacrebleu (BLEU and chrF, with their signatures) and exact match."""

from __future__ import annotations

import math

import sacrebleu


def score(hypotheses: list[str], references: list[str], moses_lang: str | None = None) -> dict[str, float | str]:
    """BLEU, chrF (with sacrebleu signatures) and the fraction of exact matches.

    `bleu` is sacreBLEU on cased, detokenized text (the default 13a tokenizer); `bleu_lc`
    is the same on lowercased text. With `moses_lang`, also `bleu_lc_moses`: both sides
    Moses-tokenized (sacremoses, that language's rules) and lowercased, then BLEU without
    further tokenization, as multi-bleu.perl computes it in the Multi30k literature.
    """
    bleu = sacrebleu.metrics.BLEU()
    bleu_lowercased = sacrebleu.metrics.BLEU(lowercase=True)
    chrf = sacrebleu.metrics.CHRF()
    bleu_score = bleu.corpus_score(hypotheses, [references])
    bleu_lc_score = bleu_lowercased.corpus_score(hypotheses, [references])
    chrf_score = chrf.corpus_score(hypotheses, [references])
    exact = sum(h.strip() == r.strip() for h, r in zip(hypotheses, references)) / max(len(references), 1)
    moses = moses_bleu(hypotheses, references, moses_lang) if moses_lang else {}
    return {
        **moses,
        "bleu": round(bleu_score.score, 2),
        "bleu_lc": round(bleu_lc_score.score, 2),
        "chrf": round(chrf_score.score, 2),
        "exact_match": round(100.0 * exact, 2),
        "bleu_signature": str(bleu.get_signature()),
        "bleu_lc_signature": str(bleu_lowercased.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }


def moses_bleu(hypotheses: list[str], references: list[str], lang: str) -> dict[str, float | str]:
    """Lowercased BLEU on Moses-tokenized text (the Multi30k papers' multi-bleu.perl convention)."""
    from sacremoses import MosesTokenizer

    try:
        tokenizer = MosesTokenizer(lang=lang)
    except Exception:  # a language without Moses rules: the language-independent ones
        tokenizer = MosesTokenizer(lang="en")

    def tokenized(lines: list[str]) -> list[str]:
        return [tokenizer.tokenize(line.lower(), escape=False, return_str=True) for line in lines]

    bleu = sacrebleu.metrics.BLEU(tokenize="none", force=True)
    result = bleu.corpus_score(tokenized(hypotheses), [tokenized(references)])
    return {
        "bleu_lc_moses": round(result.score, 2),
        "bleu_lc_moses_signature": f"{bleu.get_signature()}|pre:moses-{lang}-lc",
    }


def perplexity(loss: float) -> float:
    """exp(mean token cross-entropy), capped to stay finite in logs."""
    return math.exp(min(loss, 50.0))


HIGHER_IS_BETTER = {"bleu": True, "chrf": True, "exact_match": True, "loss": False, "ppl": False}
