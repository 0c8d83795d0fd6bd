"""Lexically constrained beam search: phrases that must appear, a prefix, phrases that must not appear.

Per sentence, in target subword ids (the Translator encodes the user's words):
- `include`: phrases the output must contain (terminology). Beam search allocates its beam
  over "banks" of equal constraint progress (dynamic beam allocation, Post & Vilar 2018, after
  the grid beam search of Hokamp & Liu 2017): at every step the candidates are the K x V
  search's 2K best, every hypothesis's continuation of each unmet constraint, and every
  hypothesis's own best token; the K kept are taken round-robin from the banks, most progress
  first, so hypotheses that have placed more of the constraints survive beside the
  likelier ones that have placed fewer. A hypothesis ends with EOS only counted as finished
  when it has met every constraint; one that ends unmet still enters the finished pool, below
  every hypothesis that met more, so a sentence whose constraints cannot be met still gets
  its best translation, with the unmet constraints reported (`Hypothesis.unmet`).
- `prefix`: the first output tokens are forced (their log-probabilities count in the score).
- `avoid`: a token that would complete an avoided phrase is never chosen.

Progress through a phrase is tracked exactly, for all phrases and rows at once, as the set of
phrase prefixes that end at the current output position: a boolean (rows, phrases, L + 1)
tensor where entry l says "the last l tokens are the phrase's first l" (entry 0 always
holds), advanced by one comparison per step. That is the string-matching automaton run
in parallel, so overlaps and restarts ("a a b" inside "a a a b") are handled.

Shapes: B sentences still searching, K beam, R = B*K rows, V vocabulary, C include phrases
per sentence, A avoided phrases per sentence, L longest phrase, M candidates per sentence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from s2s.errors import S2SError

UNMET_PENALTY = 1e6  # per unmet constraint subword: any finished hypothesis that met more ranks first


@dataclass
class SentenceConstraints:
    """One sentence's constraints in target subword ids (no BOS/EOS)."""

    include: list[list[int]] = field(default_factory=list)  # must appear
    prefix: list[int] = field(default_factory=list)  # the output starts with these
    avoid: list[list[int]] = field(default_factory=list)  # never appear (several segmentations of a phrase)

    def __bool__(self) -> bool:
        return bool(self.include or self.prefix or self.avoid)


def _padded(phrases: list[list[list[int]]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sentence a list of phrases -> ids (B, C, L) padded with -1, lengths (B, C) (0 = no phrase)."""
    count = max(1, max(len(p) for p in phrases))
    longest = max(1, max((len(x) for p in phrases for x in p), default=1))
    ids = torch.full((len(phrases), count, longest), -1, dtype=torch.long)
    lengths = torch.zeros(len(phrases), count, dtype=torch.long)
    for b, sentence in enumerate(phrases):
        for c, phrase in enumerate(sentence):
            ids[b, c, : len(phrase)] = torch.tensor(phrase, dtype=torch.long)
            lengths[b, c] = len(phrase)
    return ids.to(device), lengths.to(device)


def _advance(matched: torch.Tensor, phrases: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """matched (..., P, L+1) prefixes ending here, phrases (..., P, L), tokens (...) -> after `tokens`."""
    extends = matched[..., :-1] & phrases.eq(tokens.unsqueeze(-1).unsqueeze(-1))  # (..., P, L)
    return torch.cat([torch.ones_like(matched[..., :1]), extends], dim=-1)


class BatchConstraints:
    """The constraints of a batch's sentences and the constraint state of every beam row.

    Beam search calls, per step: `restrict_` (prefix, avoid) on the rows' log-probabilities,
    `candidates` (the bank-allocated candidate set, best first), `finish_keys` / `all_met` for
    the candidates that end, `keep_finished` and `keep_alive` with its choices, and `select`
    when sentences finish.
    """

    def __init__(self, sentences: list[SentenceConstraints], beam: int, device: torch.device):
        self.k = beam
        self.counts = [len(s.include) for s in sentences]  # real include phrases per sentence
        self.phrases, self.lengths = _padded([s.include for s in sentences], device)  # (B, C, L), (B, C)
        self.avoid, self.avoid_lengths = _padded([s.avoid for s in sentences], device)  # (B, A, La), (B, A)
        prefix, self.prefix_lengths = _padded([[s.prefix] for s in sentences], device)  # (B, 1, P), (B, 1)
        self.prefix, self.prefix_lengths = prefix[:, 0], self.prefix_lengths[:, 0]  # (B, P), (B,)
        # fixed for the batch and known from the lists, so no step waits on the device to learn them
        self.has_include = any(s.include for s in sentences)
        self.has_avoid = any(s.avoid for s in sentences)
        self.banks = 1 + max(sum(len(p) for p in s.include) for s in sentences)  # bank ids: subwords placed
        rows = len(sentences) * beam
        c, longest = self.phrases.shape[1:]
        self.matched = torch.zeros(rows, c, longest + 1, dtype=torch.bool, device=device)  # (R, C, L+1)
        self.matched[..., 0] = True
        self.met = self.lengths.eq(0).repeat_interleave(beam, dim=0)  # (R, C): no phrase = met
        a, avoid_longest = self.avoid.shape[1:]
        self.avoid_matched = torch.zeros(rows, a, avoid_longest + 1, dtype=torch.bool, device=device)  # (R, A, La+1)
        self.avoid_matched[..., 0] = True
        self.finished_unmet = torch.ones(len(sentences), beam, c, dtype=torch.bool, device=device)  # (B, K, C)
        self.active = torch.arange(len(sentences), device=device)  # the original sentences still searching
        self._expand_rows()

    def _expand_rows(self) -> None:
        """The per-sentence phrase tensors repeated for each of a sentence's K rows, rebuilt only
        when sentences leave the search (`select`), not at every step."""
        k = self.k
        self.row_phrases, self.row_lengths = self.phrases.repeat_interleave(k, 0), self.lengths.repeat_interleave(k, 0)
        last = (self.avoid_lengths - 1).clamp(min=0)  # (B, A) the last subword of each avoided phrase
        self.avoid_last = last.repeat_interleave(k, 0)  # (R, A)
        self.avoid_last_token = self.avoid.gather(2, last.unsqueeze(2)).squeeze(2).clamp(min=0).repeat_interleave(k, 0)
        self.avoid_real = self.avoid_lengths.gt(0).repeat_interleave(k, 0)  # (R, A) not padding

    def minimum_lengths(self) -> torch.Tensor:
        """(B,) output tokens the constraints need: the prefix and every phrase."""
        return self.prefix_lengths + self.lengths.sum(dim=1)

    def restrict_(self, log_probs: torch.Tensor, t: int) -> None:
        """In place on log_probs (R, V): force the prefix's t-th token, ban tokens completing an avoided phrase."""
        k = self.k
        if t < self.prefix.size(1):
            forced = self.prefix_lengths.gt(t).repeat_interleave(k)  # (R,)
            token = self.prefix[:, t].clamp(min=0).repeat_interleave(k).unsqueeze(1)  # (R, 1)
            kept = log_probs.gather(1, token)
            log_probs.masked_fill_(forced.unsqueeze(1), float("-inf"))
            log_probs.scatter_(1, token, kept)  # unforced rows get their own value back
        if self.has_avoid:
            ready = self.avoid_matched.gather(2, self.avoid_last.unsqueeze(2)).squeeze(2)  # (R, A) one subword to go
            ready &= self.avoid_real
            banned = torch.zeros_like(log_probs, dtype=torch.int32).scatter_add_(1, self.avoid_last_token, ready.int())
            log_probs.masked_fill_(banned.gt(0), float("-inf"))

    def candidates(
        self, scores: torch.Tensor, log_probs: torch.Tensor, alive_scores: torch.Tensor, top_k
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """scores (B, K*V) of every continuation -> the candidates (B, M) and their flat ids
        (beam * V + token), in the order beam search takes them; remembers each candidate's
        constraint state for `keep_alive` / `keep_finished`."""
        b, k = alive_scores.shape
        vocab = log_probs.size(1)
        top_scores, top_ids = top_k(scores, 2 * k)  # (B, 2K)
        if self.has_include:
            top_scores, top_ids = self._with_constraint_tokens(top_scores, top_ids, log_probs, alive_scores)
        origin, token = top_ids // vocab, top_ids % vocab  # (B, M)
        rows = torch.arange(b, device=scores.device).unsqueeze(1) * k + origin  # (B, M)
        self.pending_matched = _advance(self.matched[rows], self.phrases.unsqueeze(1), token)  # (B, M, C, L+1)
        at_end = self.pending_matched.gather(3, self.lengths.unsqueeze(1).unsqueeze(3).expand(-1, rows.size(1), -1, 1))
        self.pending_met = self.met[rows] | (at_end.squeeze(3) & self.lengths.gt(0).unsqueeze(1))  # (B, M, C)
        self.pending_avoid = _advance(self.avoid_matched[rows], self.avoid.unsqueeze(1), token)  # (B, M, A, La+1)
        if not self.has_include:
            return top_scores, top_ids
        order = self._bank_order(top_scores)  # (B, M)
        for name in ("pending_matched", "pending_met", "pending_avoid"):
            value = getattr(self, name)
            setattr(self, name, value.gather(1, order.view(b, -1, *[1] * (value.dim() - 2)).expand_as(value)))
        return top_scores.gather(1, order), top_ids.gather(1, order)

    def _with_constraint_tokens(
        self, top_scores: torch.Tensor, top_ids: torch.Tensor, log_probs: torch.Tensor, alive_scores: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Add each row's next token of every unmet phrase and its own best token; drop repeats."""
        b, k = alive_scores.shape
        vocab = log_probs.size(1)
        positions = torch.arange(self.matched.size(2), device=log_probs.device)  # (L+1,)
        partial = (self.matched & positions.lt(self.row_lengths.unsqueeze(2))).long() * positions  # (R, C, L+1)
        progress = partial.amax(dim=2)  # (R, C) the longest started prefix of each phrase
        phrases = self.row_phrases  # (R, C, L)
        next_token = phrases.gather(2, progress.clamp(max=phrases.size(2) - 1).unsqueeze(2)).squeeze(2)  # (R, C)
        usable = ~self.met & next_token.ge(0)
        next_token = next_token.clamp(min=0)
        next_scores = alive_scores.view(-1, 1) + log_probs.gather(1, next_token)  # (R, C)
        next_scores = next_scores.masked_fill(~usable, float("-inf"))
        best_scores, best_token = log_probs.max(dim=1)  # (R,)
        row_beam = torch.arange(k, device=log_probs.device).repeat(b)  # (R,) each row's beam index
        scores = torch.cat(
            [top_scores, next_scores.view(b, -1), (alive_scores.view(-1) + best_scores).view(b, k)], dim=1
        )  # (B, M)
        ids = torch.cat(
            [
                top_ids,
                (row_beam.unsqueeze(1) * vocab + next_token).view(b, -1),
                (row_beam * vocab + best_token).view(b, k),
            ],
            dim=1,
        )
        # repeats are found among the usable candidates only: an unusable one (-inf) must not hide a usable copy
        unusable = -1 - torch.arange(ids.size(1), device=ids.device).expand_as(ids)
        sorted_ids, order = torch.where(scores.isneginf(), unusable, ids).sort(dim=1, stable=True)
        first = torch.zeros_like(sorted_ids[:, :1], dtype=torch.bool)
        repeat_sorted = torch.cat([first, sorted_ids[:, 1:].eq(sorted_ids[:, :-1])], dim=1)
        repeat = torch.zeros_like(repeat_sorted).scatter_(1, order, repeat_sorted)  # later copies of one candidate
        return scores.masked_fill(repeat, float("-inf")), ids

    def _bank_order(self, scores: torch.Tensor) -> torch.Tensor:
        """(B, M) candidate order: round-robin over banks of equal progress, most progress first;
        within a bank by score; candidates with -inf scores last."""
        lengths = self.lengths.unsqueeze(1)  # (B, 1, C)
        positions = torch.arange(self.pending_matched.size(3), device=scores.device)
        partial = (self.pending_matched & positions.lt(lengths.unsqueeze(3))).long() * positions  # (B, M, C, L+1)
        partial = partial.amax(dim=3).masked_fill(self.pending_met, 0).amax(dim=2)  # (B, M) the best started phrase
        bank = (self.pending_met.long() * lengths).sum(dim=2) + partial  # (B, M) constraint subwords placed
        by_score = scores.argsort(dim=1, descending=True, stable=True)
        bank_sorted = bank.gather(1, by_score)
        banks = self.banks  # above every bank id, so priority orders by rank, then by bank
        one_hot = torch.nn.functional.one_hot(bank_sorted, banks)  # (B, M, banks)
        rank = (one_hot.cumsum(dim=1) * one_hot).sum(dim=2) - 1  # (B, M) place within its bank
        priority = rank * banks + (banks - 1 - bank_sorted)
        priority = priority.masked_fill(scores.gather(1, by_score).isneginf(), torch.iinfo(torch.long).max)
        return by_score.gather(1, priority.argsort(dim=1, stable=True))

    def unmet_subwords(self) -> torch.Tensor:
        """(B, M) constraint subwords the candidates have not placed."""
        return ((~self.pending_met).long() * self.lengths.unsqueeze(1)).sum(dim=2)

    def finish_keys(self, ended_scores: torch.Tensor) -> torch.Tensor:
        """(B, M) the finished pool's ranking: the score, below every hypothesis that met more."""
        return ended_scores - UNMET_PENALTY * self.unmet_subwords()

    def all_met(self) -> torch.Tensor:
        return self.unmet_subwords().eq(0)  # (B, M)

    def keep_finished(self, pool_choice: torch.Tensor) -> None:
        """pool_choice (B, K) picks from [finished (K); candidates (M)] as beam search's finished pool does."""
        pool = torch.cat([self.finished_unmet[self.active], ~self.pending_met], dim=1)  # (B, K+M, C)
        self.finished_unmet[self.active] = pool.gather(1, pool_choice.unsqueeze(2).expand(-1, -1, pool.size(2)))

    def keep_alive(self, pick: torch.Tensor) -> None:
        """pick (B, K): the candidates that stay alive become the rows' states."""

        def take(value: torch.Tensor) -> torch.Tensor:
            index = pick.view(*pick.shape, *[1] * (value.dim() - 2)).expand(-1, -1, *value.shape[2:])
            return value.gather(1, index).flatten(0, 1)

        self.matched, self.met, self.avoid_matched = (
            take(self.pending_matched),
            take(self.pending_met),
            take(self.pending_avoid),
        )

    def select(self, keep: torch.Tensor, keep_rows: torch.Tensor) -> None:
        """Only the sentences `keep` (and their rows `keep_rows`) search on."""
        self.active = self.active[keep]
        self.phrases, self.lengths = self.phrases[keep], self.lengths[keep]
        self.avoid, self.avoid_lengths = self.avoid[keep], self.avoid_lengths[keep]
        self.prefix, self.prefix_lengths = self.prefix[keep], self.prefix_lengths[keep]
        self.matched, self.met, self.avoid_matched = (
            self.matched[keep_rows],
            self.met[keep_rows],
            self.avoid_matched[keep_rows],
        )
        self._expand_rows()

    def unmet(self, sentence: int, rank: int) -> tuple[int, ...]:
        """The include phrases (indices) that the finished hypothesis at `rank` of `sentence` did not meet."""
        flags = self.finished_unmet[sentence, rank].tolist()
        return tuple(c for c, unmet in enumerate(flags) if unmet and c < self.counts[sentence])


def encode_constraints(
    tokenizer,
    count: int,
    include: list[list[str]] | None,
    prefix: list[str | None] | None,
    avoid: list[list[str]] | None,
    lowercase: bool,
) -> list[SentenceConstraints] | None:
    """The user's per-sentence phrases (words) in target subwords; None when none were given.

    Each list, when given, has one entry per sentence. A phrase is encoded as a whole text, so it
    starts at a word boundary, as it would in the output. An avoided phrase is banned in each of
    its likeliest segmentations (up to AVOID_SEGMENTATIONS), since the model may spell a word in
    other subwords than the tokenizer's best split.
    """
    given = {"constraints": include, "prefix": prefix, "avoid": avoid}
    for name, values in given.items():
        if values is None:
            continue
        if isinstance(values, str) or not isinstance(values, (list, tuple)):
            raise S2SError(f"{name} must be a list with one entry per sentence, got {type(values).__name__}")
        if len(values) != count:
            raise S2SError(f"{name} has {len(values)} entries for {count} sentences; give one per sentence")
    if include is None and prefix is None and avoid is None:
        return None

    def text(value: str, name: str, line: int) -> str:
        if not isinstance(value, str):
            raise S2SError(f"{name} of sentence {line + 1} must be text, got {type(value).__name__}")
        return value.lower() if lowercase else value

    def phrases(values, name: str, line: int) -> list[str]:
        if values is None:
            return []
        if isinstance(values, str) or not isinstance(values, (list, tuple)):
            raise S2SError(f"{name} of sentence {line + 1} must be a list of phrases, got {type(values).__name__}")
        out = [text(v, name, line).strip() for v in values]
        if any(not v for v in out):
            raise S2SError(f"{name} of sentence {line + 1} holds an empty phrase")
        return out

    out = []
    for line in range(count):
        wanted = phrases(include[line] if include else None, "constraints", line)
        banned = phrases(avoid[line] if avoid else None, "avoid", line)
        start = text(prefix[line], "prefix", line).strip() if prefix and prefix[line] is not None else ""
        clash = next((b for b in banned if b in wanted or f" {b} " in f" {start} "), None)
        if clash is not None:
            raise S2SError(f"sentence {line + 1}: {clash!r} is both avoided and required (in constraints or prefix)")
        segmentations = [s for phrase in banned for s in _segmentations(tokenizer, phrase)]
        out.append(
            SentenceConstraints(
                include=[tokenizer.encode(p) for p in wanted],
                prefix=tokenizer.encode(start) if start else [],
                avoid=segmentations,
            )
        )
    return out


AVOID_SEGMENTATIONS = 8  # segmentations banned per avoided phrase


def _segmentations(tokenizer, phrase: str) -> list[list[int]]:
    """The phrase's likeliest subword segmentations (a unigram model has several; BPE one)."""
    best = tokenizer.encode(phrase)
    try:
        found = tokenizer.nbest_encode_as_ids(phrase, AVOID_SEGMENTATIONS)
    except RuntimeError:  # BPE models have no n-best segmentation
        found = []
    unique = [best] + [list(s) for s in found if list(s) != best]
    return [s for i, s in enumerate(unique) if s and s not in unique[:i]]
