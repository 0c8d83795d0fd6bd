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
import torch.nn.functional as F

from s2s.data.batching import make_batch
from s2s.decoding.search import Hypothesis
from s2s.model.seq2seq import Seq2Seq
from s2s.special_tokens import PAD


def _batches(lengths: list[int], order: list[int], vocabulary: int, max_logits: int) -> list[list[int]]:
    """Consecutive runs of `order` whose (rows x longest target x vocabulary) logits fit `max_logits`."""
    batches: list[list[int]] = []
    for i in order:
        longest = (
            max(lengths[i], lengths[batches[-1][-1]]) if batches else 0
        )  # order is by length: the last is the longest
        if batches and (len(batches[-1]) + 1) * (longest + 1) * vocabulary <= max_logits:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


@torch.inference_mode()
def sequence_log_probs(
    model: Seq2Seq, sources: list[list[int]], targets: list[list[int]], device: torch.device, max_logits: int = 2**24
) -> list[float]:
    """Teacher-forced log p(target | source) per pair of id lists (without EOS; sources as the
    model reads them, tag included), summed over the target's subwords and EOS. A pair with an
    empty side scores -inf.

    Pairs go through the model sorted by target length, as many at a time as keep the logits
    under `max_logits` numbers (64 MiB in fp32): the decoder's loop runs once per batch, so
    few wide batches are much faster than many narrow ones.
    """
    scores = [float("-inf")] * len(sources)
    usable = sorted(
        (i for i in range(len(sources)) if sources[i] and targets[i]), key=lambda i: (len(targets[i]), len(sources[i]))
    )
    for chunk in _batches([len(t) for t in targets], usable, model.decoder.output.out_features, max_logits):
        batch = make_batch([sources[i] for i in chunk], [targets[i] for i in chunk], chunk).to(device)
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)  # (B, T, V)
        log_probs = F.log_softmax(logits.float(), dim=-1).gather(-1, batch.tgt_out.unsqueeze(-1)).squeeze(-1)  # (B, T)
        summed = log_probs.masked_fill(batch.tgt_out.eq(PAD), 0.0).sum(dim=1)  # (B,)
        for i, value in zip(chunk, summed.tolist()):
            scores[i] = value
    return scores


def reverse_scores(
    model: Seq2Seq,
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
    model: Seq2Seq,
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
