"""Subword regularization: each epoch trains on a fresh random segmentation of the training text.

Kudo (2018) samples a segmentation of every sentence from the unigram model's lattice each time
the sentence is seen; BPE-dropout (Provilkov et al., 2020) does the same for BPE by skipping
merges at random. sentencepiece does both (`enable_sampling`). Here the training split is
re-encoded once per epoch, with a seed made from the run's seed and the epoch, so every rank
and a resumed run see the same segmentation. Validation and translation keep the most likely
segmentation.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import datasets
import sentencepiece as spm

from s2s.data.subwords import Tokenizers


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """A short per-epoch pass should not print a progress bar into the training log every epoch."""
    was_enabled = not datasets.utils.are_progress_bars_disabled()
    datasets.utils.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.utils.enable_progress_bars()


def _sample_rows(
    rows: dict[str, list], tokenizers: Tokenizers, alpha: float, max_len: int
) -> dict[str, list[list[int]]]:
    src = tokenizers.sample_src(rows["src"], alpha)
    tgt = tokenizers.sample_tgt(rows["tgt"], alpha)
    # a sampled segmentation is usually longer than the most likely one; past max_len keep the latter,
    # which the corpus filter has already checked, so no pair is dropped or over-long in any epoch
    return {
        "src_ids": [s if len(s) <= max_len else best for s, best in zip(src, rows["src_ids"])],
        "tgt_ids": [t if len(t) <= max_len else best for t, best in zip(tgt, rows["tgt_ids"])],
    }


@dataclass
class SubwordSampler:
    """Re-encodes training pairs (columns src, tgt and their best ids src_ids, tgt_ids) with sampling."""

    tokenizers: Tokenizers
    alpha: float
    max_len: int
    workdir: str | None = None  # each epoch's ids go to an Arrow file here (memory-mapped); None: in memory

    def __call__(self, pairs: datasets.Dataset, seed: int, epoch: int) -> datasets.Dataset:
        """The pairs with src_ids and tgt_ids replaced by a segmentation sampled with `seed`."""
        spm.set_random_generator_seed(seed)  # one thread encodes in order, so this fixes every sample
        # two files in turn: the previous epoch's may still be mapped while this one is written
        cache_file = os.path.join(self.workdir, f"sampled{epoch % 2}.arrow") if self.workdir else None
        with _no_progress_bars():
            return pairs.map(
                _sample_rows,
                batched=True,
                fn_kwargs={"tokenizers": self.tokenizers, "alpha": self.alpha, "max_len": self.max_len},
                features=pairs.features,
                cache_file_name=cache_file,
                load_from_cache_file=False,
                new_fingerprint=f"{pairs._fingerprint}-sampled-{seed}",
            )
