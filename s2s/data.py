"""Everything training needs from the corpus: tokenizers, encoded and filtered pairs, batches.

Shapes are not made here; see batching.py for the tensors.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field

from s2s.batching import Batch, TrainBatches, make_batch, token_budget_batches
from s2s.config import DataConfig
from s2s.corpus import load_split
from s2s.errors import S2SError
from s2s.subwords import Tokenizers, load_tokenizers, tokenizer_files, train_tokenizers

log = logging.getLogger(__name__)


@dataclass
class ValidationData:
    sources: list[str]  # raw source sentences
    references: list[str]  # raw target sentences
    loss_batches: list[Batch]  # teacher-forced batches for loss / perplexity


@dataclass
class TrainingData:
    tokenizers: Tokenizers
    train: TrainBatches
    valid: ValidationData
    counts: dict[str, int] = field(default_factory=dict)  # what was read, dropped and kept


def prepare_tokenizers(cfg: DataConfig, sources: list[str], targets: list[str], run_dir: str, reuse_from: str | None, seed: int) -> Tokenizers:
    """Reuse the tokenizers of the run being resumed (copied into this run), else train new ones."""
    if reuse_from is not None:
        for path in tokenizer_files(reuse_from):
            destination = os.path.join(run_dir, os.path.basename(path))
            if os.path.abspath(path) != os.path.abspath(destination):
                shutil.copyfile(path, destination)
        return load_tokenizers(run_dir)
    log.info("training sentencepiece (%s, vocabulary %d, %s)", cfg.subword.model_type.value, cfg.subword.vocab_size, "joint" if cfg.subword.joint else "separate")
    return train_tokenizers(sources, targets, cfg.subword, run_dir, seed)


def encode_pairs(tokenizers: Tokenizers, sources: list[str], targets: list[str], max_len: int) -> tuple[list[list[int]], list[list[int]], dict[str, int]]:
    """Encode pairs to subword ids, dropping pairs with an empty side or a side over max_len."""
    src_ids, tgt_ids = tokenizers.encode_src(sources), tokenizers.encode_tgt(targets)
    kept_src, kept_tgt = [], []
    empty = too_long = 0
    for s, t in zip(src_ids, tgt_ids):
        if not s or not t:
            empty += 1
        elif len(s) > max_len or len(t) > max_len:
            too_long += 1
        else:
            kept_src.append(s)
            kept_tgt.append(t)
    return kept_src, kept_tgt, {"read": len(src_ids), "dropped_empty": empty, "dropped_too_long": too_long, "kept": len(kept_src)}


def prepare_training_data(cfg: DataConfig, run_dir: str, seed: int, reuse_tokenizers_from: str | None = None) -> TrainingData:
    """Load train and valid splits, get tokenizers, encode, filter and batch."""
    train = load_split(cfg, cfg.train_split, seed)
    valid = load_split(cfg, cfg.valid_split, seed)
    sources, targets = list(train["src"]), list(train["tgt"])
    valid_sources, valid_targets = list(valid["src"]), list(valid["tgt"])
    tokenizers = prepare_tokenizers(cfg, sources, targets, run_dir, reuse_tokenizers_from, seed)
    src_ids, tgt_ids, counts = encode_pairs(tokenizers, sources, targets, cfg.max_len)
    log.info(
        "train split %r: %d pairs read, %d dropped (empty side), %d dropped (longer than %d subwords), %d kept",
        cfg.train_split, counts["read"], counts["dropped_empty"], counts["dropped_too_long"], cfg.max_len, counts["kept"],
    )
    if not src_ids:
        raise S2SError(f"no training pairs left in split {cfg.train_split!r} after dropping empty and over-long ones")
    valid_src, valid_tgt, _ = encode_pairs(tokenizers, valid_sources, valid_targets, max_len=10**9)
    loss_batches = [
        make_batch([valid_src[i] for i in b], [valid_tgt[i] for i in b], b)
        for b in token_budget_batches([len(s) for s in valid_src], [len(t) for t in valid_tgt], cfg.max_tokens)
    ]
    return TrainingData(
        tokenizers=tokenizers,
        train=TrainBatches(src_ids, tgt_ids, cfg.max_tokens, seed),
        valid=ValidationData(valid_sources, valid_targets, loss_batches),
        counts=counts,
    )
