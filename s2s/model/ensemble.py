"""An ensemble of encoder-decoders that decodes as one model: one search over their combined predictions.

Every member encodes the source itself and keeps its own decoder state, so members may differ in
size, cell type and attention; they must share the source and target vocabularies (the
Translator checks that), because the search feeds every member the same token ids. At each step
the members' next-token log-probabilities (N, R, V) are combined into one distribution (R, V):

- `probs` (the default, as fairseq and OpenNMT-py): the mean of the probabilities,
  log((1/N) * sum_i p_i) = logsumexp_i(log p_i) - log N, a mixture;
- `log_probs`: the mean of the log-probabilities, renormalized (a product of experts,
  log_softmax(mean_i log p_i)), which favours the tokens every member finds likely.

Both give one member's distribution back exactly when all members are the same model, and scores
stay log-probabilities of the combined distribution. Shapes: N members, R decoder rows, V
vocabulary, B batch, T target length, S source length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import torch
from torch import nn

from s2s.model.decoder import DecoderState, Memory
from s2s.model.seq2seq import Seq2Seq


class Combine(str, Enum):
    probs = "probs"  # mean of the members' probabilities
    log_probs = "log_probs"  # mean of their log-probabilities, renormalized


def combine_log_probs(stacked: torch.Tensor, how: Combine) -> torch.Tensor:
    """(N, ..., V) members' log-probabilities -> (..., V) the ensemble's, normalized over V."""
    if how == Combine.probs:
        return torch.logsumexp(stacked, dim=0) - math.log(stacked.size(0))
    return torch.log_softmax(stacked.mean(dim=0), dim=-1)


@dataclass
class EnsembleMemory:
    """Each member's Memory; selects and repeats rows as one Memory does."""

    members: list[Memory]

    def select(self, sentences: torch.Tensor, rows: torch.Tensor | None = None) -> "EnsembleMemory":
        return EnsembleMemory([m.select(sentences, rows) for m in self.members])

    def repeat_rows(self, group: int) -> "EnsembleMemory":
        return EnsembleMemory([m.repeat_rows(group) for m in self.members])


@dataclass
class EnsembleState:
    """Each member's DecoderState; reordered (beam search) and shrunk (finished rows) together."""

    members: list[DecoderState]

    def select(self, index: torch.Tensor) -> "EnsembleState":
        return EnsembleState([s.select(index) for s in self.members])


class Ensemble(nn.Module):
    """Members that decode as one model: the `encode` / `step` / `log_probs` of a Seq2Seq."""

    def __init__(self, members: list[Seq2Seq], combine: Combine | str = Combine.probs):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.combine = Combine(combine)

    @property
    def has_attention(self) -> bool:
        """Attention weights (the members' mean) exist only when every member attends."""
        return all(m.has_attention for m in self.members)

    @property
    def target_vocab_size(self) -> int:
        return self.members[0].target_vocab_size

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[EnsembleMemory, EnsembleState]:
        encoded = [m.encode(src, src_lengths) for m in self.members]
        return EnsembleMemory([memory for memory, _ in encoded]), EnsembleState([state for _, state in encoded])

    def step(
        self, tokens: torch.Tensor, state: EnsembleState, memory: EnsembleMemory
    ) -> tuple[torch.Tensor, EnsembleState, torch.Tensor | None]:
        """tokens (R,) -> combined log-probabilities (R, V), every member's new state, mean attention (R, S)."""
        steps = [m.step(tokens, s, mem) for m, s, mem in zip(self.members, state.members, memory.members)]
        log_probs = combine_log_probs(torch.stack([lp for lp, _, _ in steps]), self.combine)
        weights = [w for _, _, w in steps]
        mean_weights = torch.stack(weights).float().mean(dim=0) if all(w is not None for w in weights) else None
        return log_probs, EnsembleState([s for _, s, _ in steps]), mean_weights

    def log_probs(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced: src (B, S), tgt_in (B, T) -> the combined log-probabilities (B, T, V)."""
        return combine_log_probs(
            torch.stack([m.log_probs(src, src_lengths, tgt_in) for m in self.members]), self.combine
        )
