"""Decoding: greedy search, beam search and sampling, batched over sentences and beams.

Shapes: B batch (sentences still being decoded: finished ones are dropped from
the batch), K beam size, V vocabulary, S source length, W output width.

The loops run over time steps only. Each step ends with one check of whether
anything finished, which both drops finished sentences and stops the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from s2s.config import SearchConfig
from s2s.data.batching import Batch
from s2s.decoding.constraints import BatchConstraints, SentenceConstraints
from s2s.errors import S2SError
from s2s.model.seq2seq import Seq2Seq
from s2s.special_tokens import BOS, EOS, PAD


@dataclass
class Hypothesis:
    tokens: list[int]  # output ids without BOS/EOS
    score: float  # log-probability (beam search: divided by the length penalty)
    attention: torch.Tensor | None = None  # (len(tokens) + 1, S) weights per output step incl. EOS
    unmet: tuple[int, ...] = ()  # constrained search: the include phrases (indices) it could not place


def max_output_lengths(src_lengths: torch.Tensor, cfg: SearchConfig) -> torch.Tensor:
    """(B,) the most tokens (before EOS) each sentence may produce: a * source length + b."""
    real = (src_lengths - 1).clamp(min=0).float()  # without the source EOS
    return (cfg.max_len_a * real + cfg.max_len_b).floor().long().clamp(min=1)


def length_penalty(length: torch.Tensor | int, alpha: float) -> torch.Tensor | float:
    """GNMT length penalty ((5 + length) / 6) ** alpha (Wu et al., 2016)."""
    return ((5.0 + length) / 6.0) ** alpha


def _forbid_(log_probs: torch.Tensor, force_eos: torch.Tensor | None) -> torch.Tensor:
    """In place on log_probs (B, V): PAD and BOS are never produced; rows where `force_eos`
    (B,) is set may only produce EOS. None means no row has reached its limit.

    A forced EOS keeps its real log-probability, so scores stay true log-probabilities.
    """
    log_probs[:, PAD] = float("-inf")  # two columns, no (B, V) mask and no index tensor per step
    log_probs[:, BOS] = float("-inf")
    if force_eos is not None:
        eos = log_probs[:, EOS].clone()  # (B,)
        log_probs.masked_fill_(force_eos.unsqueeze(1), float("-inf"))
        log_probs[:, EOS] = eos  # unchanged on the other rows
    return log_probs


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """scores (R, N) -> the k largest per row and their column indices (R, k), best first, as `topk`.

    Through block maxima, when N splits into blocks of c: every one of a row's k largest
    lies in a block whose maximum is among the row's k largest block maxima, so one
    reduction over all N scores and two small top-k selections (over N / c maxima, and over
    the k chosen blocks' k * c scores) replace a top-k over N. On a CPU `topk` over a long row
    costs several times a reduction, so this is faster for beam search's (B, K x V) candidates
    (docs/performance.md, "Beam search: block top-k").
    """
    rows, n = scores.shape
    block = _block_size(n, k)
    if block is None:
        return scores.topk(k, dim=1)
    blocks = scores.reshape(rows, n // block, block)  # (R, N/c, c)
    best_blocks = blocks.amax(dim=2).topk(k, dim=1).indices  # (R, k)
    picked = blocks.gather(1, best_blocks.unsqueeze(2).expand(-1, -1, block))  # (R, k, c)
    values, within = picked.view(rows, k * block).topk(k, dim=1)  # (R, k) positions in the chosen blocks
    return values, best_blocks.gather(1, within // block) * block + within % block


@lru_cache(maxsize=64)
def _block_size(n: int, k: int) -> int | None:
    """The divisor c of n nearest sqrt(n / k) (which balances the two small selections), with at
    least 8 scores a block and k blocks; None when n has none (a plain top-k is then used)."""
    target = (n / k) ** 0.5
    divisors = [d for d in range(8, n // k + 1) if n % d == 0] if n // k >= 8 else []
    return min(divisors, key=lambda d: max(d / target, target / d), default=None)


@torch.inference_mode()
def decode(
    model: Seq2Seq,
    batch: Batch,
    cfg: SearchConfig,
    generator: torch.Generator | None = None,
    return_attention: bool = False,
    constraints: list[SentenceConstraints] | None = None,
) -> list[list[Hypothesis]]:
    """Translate a batch; returns, per sentence, its n-best hypotheses (best first).

    `cfg` is taken as valid: s2s.config_checks.check_search checks it where settings are read.
    `constraints` (one per sentence) go through beam search, also with beam_size 1.
    `model` is a Seq2Seq or an Ensemble (s2s/model/ensemble.py): both encode and step alike.
    """
    if constraints is not None and any(constraints):
        if cfg.sampling:
            raise S2SError("constraints, prefix and avoid need search, not sampling (search.sampling=false)")
        return beam_search(model, batch, cfg, constraints)
    if cfg.sampling:
        return [[h] for h in sample(model, batch, cfg, generator, return_attention)]
    if cfg.beam_size == 1:
        return [[h] for h in greedy(model, batch, cfg, return_attention)]
    return beam_search(model, batch, cfg)


@torch.inference_mode()
def greedy(model: Seq2Seq, batch: Batch, cfg: SearchConfig, return_attention: bool = False) -> list[Hypothesis]:
    return _step_by_step(model, batch, cfg, lambda log_probs: top_k(log_probs, 1)[1].squeeze(1), return_attention)


@torch.inference_mode()
def sample(
    model: Seq2Seq, batch: Batch, cfg: SearchConfig, generator: torch.Generator | None, return_attention: bool = False
) -> list[Hypothesis]:
    """Ancestral sampling with temperature, top-k and top-p (nucleus, Holtzman et al., 2020);
    reproducible with a seeded generator."""

    def choose(log_probs: torch.Tensor) -> torch.Tensor:
        scaled = log_probs / cfg.temperature  # (B, V)
        if cfg.top_k > 0:
            kth = scaled.topk(min(cfg.top_k, scaled.size(-1)), dim=-1).values[:, -1:]  # (B, 1)
            scaled = scaled.masked_fill(scaled < kth, float("-inf"))
        if cfg.top_p < 1.0:
            scaled = scaled.masked_fill(outside_nucleus(scaled, cfg.top_p), float("-inf"))
        probs = torch.softmax(scaled, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B,)

    return _step_by_step(model, batch, cfg, choose, return_attention)


def outside_nucleus(scores: torch.Tensor, p: float) -> torch.Tensor:
    """scores (B, V) -> (B, V) True for the tokens outside the smallest set of most likely tokens
    whose probabilities sum to at least p; the most likely token is always inside."""
    ordered, order = scores.sort(dim=-1, descending=True)
    probs = torch.softmax(ordered, dim=-1)
    before = probs.cumsum(dim=-1) - probs  # (B, V) the mass of the more likely tokens
    return torch.zeros_like(before, dtype=torch.bool).scatter_(-1, order, before >= p)


def _step_by_step(model: Seq2Seq, batch: Batch, cfg: SearchConfig, choose, return_attention: bool) -> list[Hypothesis]:
    """Greedy or sampled decoding: one token per sentence per step; finished sentences leave the batch."""
    device = batch.src.device
    total = batch.src.size(0)
    memory, state = model.encode(batch.src, batch.src_lengths)
    limits = max_output_lengths(batch.src_lengths, cfg).to(device)  # (B,)
    width = int(limits.max()) + 1
    outputs = torch.full((total, width), PAD, dtype=torch.long, device=device)  # (B, W)
    scores = torch.zeros(total, device=device)
    attention = torch.zeros(total, width, batch.src.size(1), device=device) if return_attention else None
    active = torch.arange(total, device=device)  # rows of the original batch still decoding
    tokens = torch.full((total,), BOS, dtype=torch.long, device=device)
    first_limit = int(limits.min())  # before this step no sentence is at its limit: no forcing to check
    for t in range(width):
        log_probs, state, weights = model.step(tokens, state, memory)  # (B, V)
        log_probs = _forbid_(log_probs, t >= limits[active] if t >= first_limit else None)
        tokens = choose(log_probs)  # (B,)
        outputs[active, t] = tokens
        scores[active] += log_probs.gather(1, tokens.unsqueeze(1)).squeeze(1)
        if attention is not None and weights is not None:
            attention[active, t, : weights.size(1)] = weights
        finished = tokens.eq(EOS)
        if bool(finished.any()):
            keep = (~finished).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            active, tokens = active[keep], tokens[keep]
            memory, state = memory.select(keep), state.select(keep)
    return [
        _hypothesis(outputs[i], float(scores[i]), attention[i] if attention is not None else None) for i in range(total)
    ]


def _hypothesis(row: torch.Tensor, score: float, attention: torch.Tensor | None) -> Hypothesis:
    ids = row.tolist()
    length = ids.index(EOS) if EOS in ids else len(ids)
    weights = attention[: length + 1] if attention is not None else None
    return Hypothesis(tokens=[i for i in ids[:length] if i != PAD], score=score, attention=weights)


@torch.inference_mode()
def beam_search(
    model: Seq2Seq, batch: Batch, cfg: SearchConfig, constraints: list[SentenceConstraints] | None = None
) -> list[list[Hypothesis]]:
    """Beam search over all sentences and beams at once.

    Each step scores K x V continuations per sentence and keeps the 2K best. An EOS
    among the top K finishes a hypothesis (score divided by the length penalty);
    the K best non-EOS candidates stay alive. A sentence is done when it has K
    finished hypotheses, so with K = 1 this is exactly greedy search.

    With `constraints` (s2s/decoding/constraints.py) the candidates, their order and the
    finished pool's ranking come from the constraints, and "the top K" means the first K in
    that order; without them it is the search above, unchanged.
    """
    device = batch.src.device
    k = cfg.beam_size
    total = batch.src.size(0)
    memory, state = model.encode(batch.src, batch.src_lengths)
    expand = torch.arange(total, device=device).repeat_interleave(k)  # (B*K,)
    memory, state = memory.repeat_rows(k), state.select(expand)  # keys and values stay once per sentence
    limits = max_output_lengths(batch.src_lengths, cfg).to(device)  # (B,)
    tracker = BatchConstraints(constraints, k, device) if constraints else None
    if tracker is not None:
        limits = torch.maximum(limits, tracker.minimum_lengths())  # room for the prefix and every phrase
    width = int(limits.max()) + 1

    finished_seqs = torch.full((total, k, width), PAD, dtype=torch.long, device=device)  # (B, K, W)
    finished_scores = torch.full((total, k), float("-inf"), device=device)  # (B, K) normalized
    finished_keys = finished_scores.clone()  # (B, K) their ranking: the score, less unmet constraints
    finished_count = torch.zeros(total, dtype=torch.long, device=device)
    active = torch.arange(total, device=device)  # sentences still searching
    alive_scores = torch.full((total, k), float("-inf"), device=device)  # (B, K) raw log-probs
    alive_scores[:, 0] = 0.0  # all beams start identical: keep one so the first step does not repeat it
    alive_seqs = torch.empty(total, k, 0, dtype=torch.long, device=device)  # (B, K, t)
    tokens = torch.full((total * k,), BOS, dtype=torch.long, device=device)
    first_limit = int(limits.min())  # before this step no sentence is at its limit: no forcing to check

    for t in range(width):
        b = active.numel()
        log_probs, state, _ = model.step(tokens, state, memory)  # (B*K, V)
        vocab = log_probs.size(-1)
        log_probs = _forbid_(log_probs, (t >= limits[active]).repeat_interleave(k) if t >= first_limit else None)
        if tracker is not None:
            tracker.restrict_(log_probs, t)  # the prefix, the avoided phrases
        candidates = (alive_scores.view(-1, 1) + log_probs).view(b, k * vocab)  # (B, K*V)
        if tracker is None:
            top_scores, top_ids = top_k(candidates, 2 * k)  # (B, 2K)
        else:
            top_scores, top_ids = tracker.candidates(candidates, log_probs, alive_scores, top_k)  # (B, M) in order
        width_m = top_ids.size(1)
        origin, token = top_ids // vocab, top_ids % vocab  # (B, M) beam of origin, token
        seqs = torch.cat([alive_seqs.gather(1, origin.unsqueeze(2).expand(-1, -1, t)), token.unsqueeze(2)], dim=2)

        # hypotheses that end here: EOS within the top K candidates
        in_top_k = torch.arange(width_m, device=device).unsqueeze(0) < k  # (1, M)
        ends = token.eq(EOS) & in_top_k & top_scores.isfinite()  # (B, M)
        ended_scores = torch.where(ends, top_scores / length_penalty(t + 1, cfg.length_penalty), float("-inf"))
        ended_keys = ended_scores if tracker is None else tracker.finish_keys(ended_scores)
        padded = torch.full((b, width_m, width), PAD, dtype=torch.long, device=device)
        padded[:, :, : t + 1] = seqs
        pool_keys = torch.cat([finished_keys[active], ended_keys], dim=1)  # (B, K+M)
        pool_scores = torch.cat([finished_scores[active], ended_scores], dim=1)
        pool_seqs = torch.cat([finished_seqs[active], padded], dim=1)  # (B, K+M, W)
        best_keys, best = pool_keys.topk(k, dim=1)  # (B, K)
        finished_keys[active] = best_keys
        finished_scores[active] = pool_scores.gather(1, best)
        finished_seqs[active] = pool_seqs.gather(1, best.unsqueeze(2).expand(-1, -1, width))
        finished_count[active] += (ends if tracker is None else ends & tracker.all_met()).sum(dim=1)
        if tracker is not None:
            tracker.keep_finished(best)

        # the K best continuations that did not end stay alive (with constraints: the first K in order)
        alive_candidates = torch.where(token.eq(EOS), float("-inf"), top_scores)  # (B, M)
        if tracker is None:
            alive_scores, pick = alive_candidates.topk(k, dim=1)  # (B, K)
        else:
            pick = alive_candidates.isneginf().argsort(dim=1, stable=True)[:, :k]  # (B, K)
            alive_scores = alive_candidates.gather(1, pick)
            tracker.keep_alive(pick)
        alive_seqs = seqs.gather(1, pick.unsqueeze(2).expand(-1, -1, t + 1))  # (B, K, t+1)
        tokens = token.gather(1, pick).view(-1)  # (B*K,)
        rows = (torch.arange(b, device=device).unsqueeze(1) * k + origin.gather(1, pick)).view(-1)  # (B*K,)
        state = state.select(rows)

        done = finished_count[active].ge(k) | alive_scores.isneginf().all(dim=1)  # (B,)
        if bool(done.any()):
            keep = (~done).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            keep_rows = (keep.unsqueeze(1) * k + torch.arange(k, device=device)).view(-1)  # (B'*K,)
            active, alive_scores, alive_seqs = active[keep], alive_scores[keep], alive_seqs[keep]
            tokens, state, memory = tokens[keep_rows], state.select(keep_rows), memory.select(keep, keep_rows)
            if tracker is not None:
                tracker.select(keep, keep_rows)

    n_best = [_n_best(finished_seqs[i], finished_scores[i], cfg.n_best) for i in range(total)]
    if tracker is not None:
        for i, hypotheses in enumerate(n_best):
            for rank, hypothesis in enumerate(hypotheses):
                hypothesis.unmet = tracker.unmet(i, rank) if constraints[i].include else ()
    return n_best


def _n_best(seqs: torch.Tensor, scores: torch.Tensor, n: int) -> list[Hypothesis]:
    """seqs (K, W), scores (K,) sorted best first -> up to n hypotheses with finite scores."""
    found = [_hypothesis(seqs[j], float(scores[j]), None) for j in range(seqs.size(0)) if torch.isfinite(scores[j])]
    return found[:n] if found else [Hypothesis(tokens=[], score=float("-inf"))]
