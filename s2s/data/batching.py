"""Token-budget batches of similar-length sentences, padded into tensors with their lengths.

Shapes: B batch, S source length, T target length (including BOS or EOS), N sentences in a corpus.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Iterator, Sequence

import datasets
import numpy as np
import pyarrow.compute as pc
import torch

from s2s.data.subword_sampling import SubwordSampler
from s2s.special_tokens import BOS, EOS, PAD


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
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)  # (B,)
    offset = int(prefix is not None)
    width = int(lengths.max()) + offset + (suffix is not None)
    out = torch.full((len(sequences), width), PAD, dtype=torch.long)  # (B, L)
    columns = torch.arange(width)  # (L,)
    inside = (columns >= offset) & (columns < offset + lengths[:, None])  # (B, L), row-major like the ids
    out[inside] = torch.tensor(list(chain.from_iterable(sequences)), dtype=torch.long)
    if prefix is not None:
        out[:, 0] = prefix
    if suffix is not None:
        out[torch.arange(len(sequences)), offset + lengths] = suffix
    return out


def make_batch(src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]] | None, indices: Sequence[int]) -> Batch:
    """Build a Batch from id lists (without BOS/EOS); the source gets EOS appended."""
    src_tensor = pad(src, suffix=EOS)  # (B, S)
    lengths = torch.tensor([len(s) + 1 for s in src], dtype=torch.long)  # (B,)
    index_tensor = torch.tensor(list(indices), dtype=torch.long)
    if tgt is None:
        return Batch(src_tensor, lengths, indices=index_tensor)
    return Batch(src_tensor, lengths, pad(tgt, prefix=BOS), pad(tgt, suffix=EOS), index_tensor)


@dataclass(eq=False)
class BatchPlan(Sequence[list[int]]):
    """The batches of one epoch as slices of a single permutation, a few bytes per sentence.

    A read-only sequence of index lists: plan[p] is the batch at position p of the epoch,
    order[starts[k]:starts[k + 1]] with k = shuffle[p]; slices give lists of batches.
    """

    order: np.ndarray  # (N,) sentence indices, sorted by length
    starts: np.ndarray  # (batches + 1,) where each batch begins in `order`, then N
    shuffle: np.ndarray  # (batches,) which batch comes at each position of the epoch

    def __len__(self) -> int:
        return len(self.shuffle)

    def __getitem__(self, position: int | slice) -> list[int] | list[list[int]]:
        if isinstance(position, slice):
            return [self[p] for p in range(*position.indices(len(self)))]
        k = self.shuffle[position]
        return self.order[self.starts[k] : self.starts[k + 1]].tolist()


def plan_batches(
    src_lengths: Sequence[int] | np.ndarray,
    tgt_lengths: Sequence[int] | np.ndarray,
    max_tokens: int,
    generator: torch.Generator | None = None,
    source_first: bool = False,
) -> BatchPlan:
    """Group sentence indices into batches whose padded size fits `max_tokens` (see token_budget_batches)."""
    src, tgt = np.asarray(src_lengths), np.asarray(tgt_lengths)
    count = len(src)
    order = torch.randperm(count, generator=generator).numpy() if generator is not None else np.arange(count)
    # a stable sort by target length, then source length, keeps the random order among equal pairs. Target
    # first (the default): the decoder's sequential steps and output layer run over padding (the encoder too
    # on a CPU, but in one fused call per layer), so this ordering leaves far less target padding than
    # sorting by source first (`source_first`, data.sort_first=source; figures in docs/performance.md).
    keys = (
        (tgt[order], src[order]) if source_first else (src[order], tgt[order])
    )  # np.lexsort sorts by the last key first
    order = order[np.lexsort(keys)].astype(np.int32 if count < 2**31 else np.int64)
    longest = np.maximum(src, tgt)[order] + 1  # (N,) padded width of each sentence, in sorted order
    starts = _batch_starts(longest, max_tokens)
    shuffle = (
        torch.randperm(len(starts) - 1, generator=generator).numpy()
        if generator is not None
        else np.arange(len(starts) - 1)
    )
    return BatchPlan(order, starts, shuffle)


def _batch_starts(longest: np.ndarray, max_tokens: int) -> np.ndarray:
    """Greedy packing in order: a sentence joins the current batch while (count x widest) fits.

    One step per batch, not per sentence: the padded sizes of the candidate batches
    starting at `start` are cumulative maxima times counts, which never decrease, so the
    batch ends where they first pass the budget. A batch of n sentences has
    n * longest[start] <= max_tokens, which bounds the window looked at.
    """
    starts = [0]
    start, count = 0, len(longest)
    while start < count:
        window = longest[start : start + max(1, max_tokens // int(longest[start]))]
        sizes = np.maximum.accumulate(window) * np.arange(1, len(window) + 1)
        start += max(1, int(np.searchsorted(sizes, max_tokens, side="right")))
        starts.append(start)
    return np.asarray(starts, dtype=np.int64)


def token_budget_batches(
    src_lengths: Sequence[int],
    tgt_lengths: Sequence[int],
    max_tokens: int,
    generator: torch.Generator | None = None,
    source_first: bool = False,
) -> list[list[int]]:
    """Group sentence indices into batches whose padded size fits `max_tokens`.

    Sentences are sorted by target length, then source length (`source_first`: the other
    way round), ties broken at random when a generator is given, so a batch holds
    sentences of nearly equal length and padding is small. The padded size of a batch is
    its count times its longest side (+1 for EOS/BOS). With a generator, the batch order is
    shuffled too.
    """
    return list(plan_batches(src_lengths, tgt_lengths, max_tokens, generator, source_first))


def sequence_lengths(dataset: datasets.Dataset, column: str, chunk: int = 100_000) -> np.ndarray:
    """The lengths of the id sequences in `column`, computed in Arrow a chunk at a time: (N,) int32."""
    lengths = np.empty(len(dataset), dtype=np.int32)
    done = 0
    for table in dataset.select_columns([column]).with_format("arrow").iter(batch_size=chunk):
        part = pc.list_value_length(table[column]).to_numpy()
        lengths[done : done + len(part)] = part
        done += len(part)
    return lengths


class TrainBatches:
    """The training batches of each epoch, reproducible from (seed, epoch) so a run can resume mid-epoch.

    The id sequences stay in `pairs` (Arrow, memory-mapped when it is on disk; columns
    `src_ids` and `tgt_ids`); only their lengths are held in memory, as int32 arrays,
    and the rows of a batch are read when the batch is made.
    """

    def __init__(
        self,
        pairs: datasets.Dataset,
        max_tokens: int,
        seed: int,
        sampler: SubwordSampler | None = None,
        source_first: bool = False,
    ):
        self.max_tokens, self.seed, self.source_first = max_tokens, seed, source_first
        self.sampler = sampler  # subword regularization: a new segmentation of `text_pairs` each epoch
        self.text_pairs = pairs if sampler is not None else None
        self._use(pairs)
        self._plan: tuple[int, BatchPlan] | None = (
            None  # the latest epoch's plan: the training loop asks more than once
        )

    def _use(self, pairs: datasets.Dataset) -> None:
        self.pairs = pairs.select_columns(["src_ids", "tgt_ids"]).with_format(None)
        self.src_lengths = sequence_lengths(self.pairs, "src_ids")  # (N,)
        self.tgt_lengths = sequence_lengths(self.pairs, "tgt_ids")  # (N,)

    def plan(self, epoch: int) -> BatchPlan:
        """The epoch's batches as a compact sequence of index lists (what epoch_batches returns, as a list).

        With a sampler, planning an epoch also re-segments the corpus for it; `batch` reads the
        segmentation of the epoch planned last.
        """
        if self._plan is None or self._plan[0] != epoch:
            epoch_seed = self.seed * 100_003 + epoch
            if self.sampler is not None:
                self._use(self.sampler(self.text_pairs, epoch_seed, epoch))
            generator = torch.Generator().manual_seed(epoch_seed)
            self._plan = (
                epoch,
                plan_batches(self.src_lengths, self.tgt_lengths, self.max_tokens, generator, self.source_first),
            )
        return self._plan[1]

    def num_batches(self, epoch: int) -> int:
        return len(self.plan(epoch))

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        return list(self.plan(epoch))

    def iterate(self, epoch: int, start: int = 0) -> Iterator[tuple[int, Batch]]:
        """Yield (position in epoch, batch), skipping the first `start` batches (resume)."""
        plan = self.plan(epoch)
        for position in range(max(start, 0), len(plan)):
            yield position, self.batch(plan[position])

    def batch(self, indices: list[int]) -> Batch:
        rows = self.pairs[indices]  # reads just these rows from Arrow
        return make_batch(rows["src_ids"], rows["tgt_ids"], indices)

    @property
    def num_tokens(self) -> int:
        return int(self.tgt_lengths.sum(dtype=np.int64)) + len(self.tgt_lengths)
