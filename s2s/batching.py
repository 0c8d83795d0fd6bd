"""Token-budget batches of similar-length sentences, padded into tensors with their lengths.

Shapes: B batch, S source length, T target length (including BOS or EOS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from s2s.subwords import BOS, EOS, PAD


@dataclass
class Batch:
    src: torch.Tensor  # (B, S) source ids ending in EOS, PAD after
    src_lengths: torch.Tensor  # (B,) real source lengths, on the CPU (needed by packing)
    tgt_in: torch.Tensor | None = None  # (B, T) BOS + target ids, PAD after
    tgt_out: torch.Tensor | None = None  # (B, T) target ids + EOS, PAD after
    indices: torch.Tensor | None = None  # (B,) position of each sentence in its corpus

    @property
    def num_tgt_tokens(self) -> int:
        return int(self.tgt_out.ne(PAD).sum()) if self.tgt_out is not None else 0

    def to(self, device: torch.device) -> "Batch":
        move = lambda t: t.to(device, non_blocking=True) if t is not None else None  # noqa: E731
        return Batch(move(self.src), self.src_lengths, move(self.tgt_in), move(self.tgt_out), self.indices)


def pad(sequences: Sequence[Sequence[int]], prefix: int | None = None, suffix: int | None = None) -> torch.Tensor:
    """Pad id lists into a (B, L) tensor, optionally adding a first and/or last token to each."""
    extra = (prefix is not None) + (suffix is not None)
    width = max(len(s) for s in sequences) + extra
    out = torch.full((len(sequences), width), PAD, dtype=torch.long)
    for row, seq in enumerate(sequences):
        full = ([prefix] if prefix is not None else []) + list(seq) + ([suffix] if suffix is not None else [])
        out[row, : len(full)] = torch.tensor(full, dtype=torch.long)
    return out


def make_batch(src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]] | None, indices: Sequence[int]) -> Batch:
    """Build a Batch from id lists (without BOS/EOS); the source gets EOS appended."""
    src_tensor = pad(src, suffix=EOS)  # (B, S)
    lengths = torch.tensor([len(s) + 1 for s in src], dtype=torch.long)  # (B,)
    index_tensor = torch.tensor(list(indices), dtype=torch.long)
    if tgt is None:
        return Batch(src_tensor, lengths, indices=index_tensor)
    return Batch(src_tensor, lengths, pad(tgt, prefix=BOS), pad(tgt, suffix=EOS), index_tensor)


def token_budget_batches(
    src_lengths: Sequence[int], tgt_lengths: Sequence[int], max_tokens: int, generator: torch.Generator | None = None
) -> list[list[int]]:
    """Group sentence indices into batches whose padded size fits `max_tokens`.

    Sentences are sorted by length (ties broken at random when a generator is
    given), so a batch holds sentences of nearly equal length and padding is
    small. The padded size of a batch is its count times its longest side
    (+1 for EOS/BOS). With a generator, the batch order is shuffled too.
    """
    count = len(src_lengths)
    src = torch.as_tensor(src_lengths, dtype=torch.long)
    tgt = torch.as_tensor(tgt_lengths, dtype=torch.long)
    order = torch.randperm(count, generator=generator) if generator is not None else torch.arange(count)
    # stable sorts: by source length, then target length, keeping the random tie order
    order = order[torch.sort(tgt[order], stable=True).indices]
    order = order[torch.sort(src[order], stable=True).indices]
    longest = torch.maximum(src, tgt)[order] + 1
    batches: list[list[int]] = []
    current: list[int] = []
    current_max = 0
    for index, length in zip(order.tolist(), longest.tolist()):
        new_max = max(current_max, length)
        if current and new_max * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, new_max = [], length
        current.append(index)
        current_max = new_max
    if current:
        batches.append(current)
    if generator is not None:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


class TrainBatches:
    """The training batches of each epoch, reproducible from (seed, epoch) so a run can resume mid-epoch."""

    def __init__(self, src_ids: list[list[int]], tgt_ids: list[list[int]], max_tokens: int, seed: int):
        self.src_ids, self.tgt_ids = src_ids, tgt_ids
        self.src_lengths = [len(s) for s in src_ids]
        self.tgt_lengths = [len(t) for t in tgt_ids]
        self.max_tokens, self.seed = max_tokens, seed

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return token_budget_batches(self.src_lengths, self.tgt_lengths, self.max_tokens, generator)

    def iterate(self, epoch: int, start: int = 0) -> Iterator[tuple[int, Batch]]:
        """Yield (position in epoch, batch), skipping the first `start` batches (resume)."""
        for position, indices in enumerate(self.epoch_batches(epoch)):
            if position >= start:
                yield position, self.batch(indices)

    def batch(self, indices: list[int]) -> Batch:
        return make_batch([self.src_ids[i] for i in indices], [self.tgt_ids[i] for i in indices], indices)

    @property
    def num_tokens(self) -> int:
        return sum(self.tgt_lengths) + len(self.tgt_lengths)
