"""Reranking beam search's candidates with the reverse direction of the same model.

A model trained with `data.both_directions=true` gives both p(y | x) and p(x | y) from one set
of weights. Beam search finds candidates y by p(y | x); a candidate that leaves out or invents
content explains the source badly, so adding how well it predicts the source back,
log p(x | y), picks more faithful translations (the noisy-channel idea of Yee et al., 2019,
who use a separate channel model; here it is the same model read the other way).

The combined score of candidate y for source x is

    beam score of y  +  weight * log p(x | y) / (|x| + 1)

where the beam score is the search's own (log-probability divided by the length penalty) and
|x| + 1 counts the source's subwords and its EOS, so `weight` (`search.reverse_weight`) means
the same for short and long sentences. Choose it on validation (scripts/search_sweep.py
--reverse-weights).
"""

from __future__ import annotations

import dataclasses

import torch

from s2s.decoding.forced import sequence_log_probs
from s2s.decoding.search import Hypothesis


def reverse_scores(
    model,
    sources: list[list[int]],
    candidates: list[list[list[int]]],
    reverse_tag: tuple[int, ...],
    device: torch.device,
) -> list[list[float]]:
    """log p(source | candidate) / (source subwords + 1) for every candidate of every source.

    `sources` are untagged id lists; each candidate is read with `reverse_tag` before it."""
    flat_sources = [src for src, cands in zip(sources, candidates) for _ in cands]
    flat_candidates = [[*reverse_tag, *c] if c else [] for cands in candidates for c in cands]
    flat = sequence_log_probs(
        model, flat_candidates, flat_sources, device
    )  # the candidate reads, the source is predicted
    out, position = [], 0
    for src, cands in zip(sources, candidates):
        out.append([score / (len(src) + 1) for score in flat[position : position + len(cands)]])
        position += len(cands)
    return out


def rerank(beam_scores: list[list[float]], back_scores: list[list[float]], weight: float) -> list[list[int]]:
    """Per source, its candidates' indices ordered by beam score + weight * reverse score, best
    first (ties keep the beam's order, so weight 0 keeps it; with weight > 0 an empty candidate,
    whose reverse score is -inf, comes last)."""
    orders = []
    for beam, back in zip(beam_scores, back_scores):
        combined = [b + weight * r if weight else b for b, r in zip(beam, back)]
        orders.append(sorted(range(len(combined)), key=lambda k: (-combined[k], k)))
    return orders


def rerank_hypotheses(
    model,
    sources: list[list[int]],
    n_best: list[list[Hypothesis]],
    reverse_tag: tuple[int, ...],
    weight: float,
    keep: int,
    device: torch.device,
) -> list[list[Hypothesis]]:
    """Each source's hypotheses reordered by the combined score (which becomes their score); the best `keep`."""
    back = reverse_scores(model, sources, [[h.tokens for h in hyps] for hyps in n_best], reverse_tag, device)
    beam_scores = [[h.score for h in hyps] for hyps in n_best]
    out = []
    for hyps, beam, rev, order in zip(n_best, beam_scores, back, rerank(beam_scores, back, weight)):
        out.append([dataclasses.replace(hyps[k], score=beam[k] + weight * rev[k]) for k in order[:keep]])
    return out
