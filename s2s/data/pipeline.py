"""Everything training needs from the corpus: tokenizers, encoded and filtered pairs, batches.

The training split stays in Arrow from file to batch: sentencepiece learns from a bounded
sample read a batch at a time, the subword ids are written by `Dataset.map` into Arrow
files in a temporary directory (memory-mapped), empty and over-long pairs are dropped with
`Dataset.filter`, and batching holds only the lengths. Memory therefore does not grow with
the corpus beyond a few bytes per sentence. The validation split is small and kept in memory.

Shapes are not made here; see batching.py for the tensors.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from typing import Iterator

import datasets
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from s2s.config import DataConfig, SortFirst
from s2s.config_checks import check_data
from s2s.data.batching import Batch, TrainBatches, make_batch, token_budget_batches
from s2s.data.corpus import load_split
from s2s.data.subword_sampling import SubwordSampler
from s2s.data.subwords import Tokenizers, direction_tag, load_tokenizers, tokenizer_files, train_tokenizers
from s2s.errors import S2SError

log = logging.getLogger(__name__)

READ_BATCH = 10_000  # rows read from Arrow at a time when streaming over a column


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


def iter_texts(dataset: datasets.Dataset, column: str, batch_size: int = READ_BATCH) -> Iterator[str]:
    """The strings of one column, read from Arrow `batch_size` rows at a time (never the whole column)."""
    for rows in dataset.select_columns([column]).iter(batch_size=batch_size):
        yield from rows[column]


def prepare_tokenizers(
    cfg: DataConfig, train: datasets.Dataset, run_dir: str, reuse_from: str | None, seed: int
) -> Tokenizers:
    """Reuse the tokenizers of the run being resumed (copied into this run), else train new ones on `train`."""
    if reuse_from is not None:
        for path in tokenizer_files(reuse_from):
            destination = os.path.join(run_dir, os.path.basename(path))
            if os.path.abspath(path) != os.path.abspath(destination):
                shutil.copyfile(path, destination)
        return load_tokenizers(run_dir)
    log.info(
        "training sentencepiece (%s, vocabulary %d, %s)",
        cfg.subword.model_type.value,
        cfg.subword.vocab_size,
        "joint" if cfg.subword.joint else "separate",
    )
    # the sampling pass reads the whole training split: show it; sentencepiece itself has no progress hook
    sources = tqdm(
        iter_texts(train, "src"),
        total=len(train),
        desc="sampling for sentencepiece",
        unit="pair",
        disable=None,
        leave=False,
    )
    started = time.perf_counter()
    tags = [direction_tag(cfg.src_lang), direction_tag(cfg.tgt_lang)] if cfg.both_directions else []
    tokenizers = train_tokenizers(sources, iter_texts(train, "tgt"), cfg.subword, run_dir, seed, symbols=tags)
    log.info(
        "sentencepiece ready in %.1f s (%d pieces)", time.perf_counter() - started, tokenizers.tgt.get_piece_size()
    )
    return tokenizers


def encode_pairs(
    tokenizers: Tokenizers, sources: list[str], targets: list[str], max_len: int
) -> tuple[list[list[int]], list[list[int]], dict[str, int]]:
    """Encode in-memory pairs to subword ids, dropping pairs with an empty side or a side over max_len."""
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
    return (
        kept_src,
        kept_tgt,
        {"read": len(src_ids), "dropped_empty": empty, "dropped_too_long": too_long, "kept": len(kept_src)},
    )


def _encode_batch(rows: dict[str, list[str]], tokenizers: Tokenizers) -> dict[str, list[list[int]]]:
    return {"src_ids": tokenizers.encode_src(rows["src"]), "tgt_ids": tokenizers.encode_tgt(rows["tgt"])}


def _both_sides_non_empty(rows: pa.Table) -> pa.ChunkedArray:
    return pc.and_(
        pc.greater(pc.list_value_length(rows["src_ids"]), 0), pc.greater(pc.list_value_length(rows["tgt_ids"]), 0)
    )


def _both_sides_at_most(rows: pa.Table, max_len: int) -> pa.ChunkedArray:
    return pc.and_(
        pc.less_equal(pc.list_value_length(rows["src_ids"]), max_len),
        pc.less_equal(pc.list_value_length(rows["tgt_ids"]), max_len),
    )


def encode_dataset(
    tokenizers: Tokenizers, pairs: datasets.Dataset, max_len: int, workdir: str | None, keep_text: bool = False
) -> tuple[datasets.Dataset, dict[str, int]]:
    """Encode a Dataset of `src`/`tgt` strings into `src_ids`/`tgt_ids`, dropping pairs with an
    empty side, then pairs with a side over max_len; return the kept pairs and the counts.

    The results are written as Arrow files into `workdir` (memory-mapped), or kept in
    memory when `workdir` is None. With keep_text the `src`/`tgt` strings stay beside the ids.
    """
    largest = max(tokenizers.src.get_piece_size(), tokenizers.tgt.get_piece_size())
    id_type = datasets.Value("uint16" if largest <= 2**16 else "int32")
    text_columns = {"src": datasets.Value("string"), "tgt": datasets.Value("string")} if keep_text else {}
    in_workdir = lambda name: os.path.join(workdir, name) if workdir else None  # noqa: E731
    encoded = pairs.map(
        _encode_batch,
        batched=True,
        fn_kwargs={"tokenizers": tokenizers},
        remove_columns=[c for c in pairs.column_names if c not in text_columns],
        features=datasets.Features(
            {**text_columns, "src_ids": datasets.List(id_type), "tgt_ids": datasets.List(id_type)}
        ),
        cache_file_name=in_workdir("encoded.arrow"),
        load_from_cache_file=False,
        desc="encoding",
    )
    as_arrow = encoded.with_format("arrow")  # the filters see Arrow tables and never build Python lists
    non_empty = as_arrow.filter(
        _both_sides_non_empty,
        batched=True,
        batch_size=READ_BATCH,
        cache_file_name=in_workdir("non_empty.arrow"),
        load_from_cache_file=False,
        desc="dropping empty pairs",
    )
    kept = non_empty.filter(
        _both_sides_at_most,
        batched=True,
        batch_size=READ_BATCH,
        fn_kwargs={"max_len": max_len},
        cache_file_name=in_workdir("kept.arrow"),
        load_from_cache_file=False,
        desc="dropping over-long pairs",
    )
    counts = {
        "read": len(encoded),
        "dropped_empty": len(encoded) - len(non_empty),
        "dropped_too_long": len(non_empty) - len(kept),
        "kept": len(kept),
    }
    return kept.with_format(None), counts


def encode_both_directions(
    cfg: DataConfig, tokenizers: Tokenizers, train: datasets.Dataset, workdir: str | None, seed: int
) -> tuple[datasets.Dataset, dict[str, int]]:
    """The training pairs tagged toward the target language, then the swapped pairs (all, or a
    seeded random `data.reverse_fraction` of them) tagged toward the source language."""
    forward, counts = encode_dataset(tokenizers.for_target(cfg.tgt_lang), train, cfg.max_len, workdir)
    reversed_pairs = train
    if cfg.reverse_fraction < 1:
        chosen = random.Random(seed).sample(range(len(train)), max(1, round(cfg.reverse_fraction * len(train))))
        reversed_pairs = train.select(sorted(chosen))
    swapped = reversed_pairs.rename_columns({"src": "tgt", "tgt": "src"})
    reverse_dir = os.path.join(workdir, "reverse") if workdir else None
    if reverse_dir:
        os.makedirs(reverse_dir)
    reverse, reverse_counts = encode_dataset(tokenizers.for_target(cfg.src_lang), swapped, cfg.max_len, reverse_dir)
    log.info(
        "both directions: %d %s->%s pairs and %d %s->%s pairs",
        counts["kept"],
        cfg.src_lang,
        cfg.tgt_lang,
        reverse_counts["kept"],
        cfg.tgt_lang,
        cfg.src_lang,
    )
    return datasets.concatenate_datasets([forward, reverse]), {key: counts[key] + reverse_counts[key] for key in counts}


def prepare_training_batches(
    cfg: DataConfig, tokenizers: Tokenizers, train: datasets.Dataset, seed: int
) -> tuple[TrainBatches, dict[str, int]]:
    """Encode and filter the training split into batches; the Arrow files live as long as the batches."""
    alpha = cfg.subword.sampling_alpha
    workdir = (
        tempfile.mkdtemp(prefix="s2s-train-data-") if train.cache_files else None
    )  # in-memory corpora stay in memory
    try:
        if cfg.both_directions:
            pairs, counts = encode_both_directions(cfg, tokenizers, train, workdir, seed)
        else:
            pairs, counts = encode_dataset(tokenizers, train, cfg.max_len, workdir, keep_text=alpha > 0)
    except BaseException:
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    log.info(
        "train split %r: %d pairs read%s, %d dropped (empty side), %d dropped (longer than %d subwords), %d kept",
        cfg.train_split,
        counts["read"],
        " (both directions counted)" if cfg.both_directions else "",
        counts["dropped_empty"],
        counts["dropped_too_long"],
        cfg.max_len,
        counts["kept"],
    )
    if not counts["kept"]:
        raise S2SError(f"no training pairs left in split {cfg.train_split!r} after dropping empty and over-long ones")
    sampler = SubwordSampler(tokenizers, alpha, cfg.max_len, workdir) if alpha > 0 else None
    if sampler is not None:
        log.info("subword regularization: a new segmentation of the training split each epoch (alpha %g)", alpha)
    batches = TrainBatches(pairs, cfg.max_tokens, seed, sampler, source_first=cfg.sort_first == SortFirst.source)
    if workdir:
        weakref.finalize(batches, shutil.rmtree, workdir, ignore_errors=True)
    return batches, counts


def prepare_validation(tokenizers: Tokenizers, valid: datasets.Dataset, max_tokens: int) -> ValidationData:
    """The validation split in memory: raw text for translation, padded batches for the loss."""
    sources, references = list(valid["src"]), list(valid["tgt"])
    src_ids, tgt_ids, _ = encode_pairs(tokenizers, sources, references, max_len=10**9)
    loss_batches = [
        make_batch([src_ids[i] for i in b], [tgt_ids[i] for i in b], b)
        for b in token_budget_batches([len(s) for s in src_ids], [len(t) for t in tgt_ids], max_tokens)
    ]
    return ValidationData(sources, references, loss_batches)


def prepare_training_data(
    cfg: DataConfig, run_dir: str, seed: int, reuse_tokenizers_from: str | None = None
) -> TrainingData:
    """Load train and valid splits, get tokenizers, encode, filter and batch.

    With data.both_directions the returned tokenizers tag sources toward data.tgt_lang, the
    direction validated and translated.
    """
    check_data(cfg)
    train = load_split(cfg, cfg.train_split, seed)
    valid = load_split(cfg, cfg.valid_split, seed)
    tokenizers = prepare_tokenizers(cfg, train, run_dir, reuse_tokenizers_from, seed)
    if cfg.both_directions:
        tokenizers = tokenizers.for_target(cfg.tgt_lang)
    batches, counts = prepare_training_batches(cfg, tokenizers, train, seed)
    return TrainingData(
        tokenizers=tokenizers, train=batches, valid=prepare_validation(tokenizers, valid, cfg.max_tokens), counts=counts
    )
