"""Load parallel corpora as HF `datasets.Dataset`s with two string columns, `src` and `tgt`.

Sources: the embedded generated dates task, local files (plain-text pairs, TSV,
JSONL) and, for users who are online, a dataset on the HuggingFace hub. Every
problem a user can fix (missing file, mismatched line counts, empty corpus)
raises `S2SError` naming the file.

Local files are read by `datasets` into its cache as Arrow and memory-mapped, and
every transformation runs batch by batch, so a corpus never sits in memory as
Python lists.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Callable

import datasets

from s2s.config import CorpusFormat, DataConfig
from s2s.data.dates import make_date_splits
from s2s.errors import S2SError

_PAIR_FEATURES = datasets.Features({"src": datasets.Value("string"), "tgt": datasets.Value("string")})

datasets.logging.set_verbosity_error()
if not sys.stderr.isatty():
    datasets.disable_progress_bars()  # bars are for terminals; logs and pipes stay clean


def load_split(cfg: DataConfig, split: str, seed: int = 0) -> datasets.Dataset:
    """Return the pairs of one split as a Dataset with columns `src` and `tgt`."""
    match cfg.format:
        case CorpusFormat.dates:
            dataset = _load_dates(cfg, split, seed)
        case CorpusFormat.text:
            dataset = _load_text_pair(cfg, split)
        case CorpusFormat.tsv:
            dataset = _load_tsv(cfg, split)
        case CorpusFormat.jsonl:
            dataset = _load_jsonl(cfg, split)
        case CorpusFormat.hub:
            dataset = _load_hub(cfg, split)
    if len(dataset) == 0:
        raise S2SError(f"the {split!r} split of corpus {cfg.name!r} is empty")
    if cfg.lowercase:
        dataset = dataset.map(_lowercase, batched=True, desc="lowercasing")
    return dataset


def _lowercase(batch: dict[str, list[str]]) -> dict[str, list[str]]:
    return {"src": [s.lower() for s in batch["src"]], "tgt": [t.lower() for t in batch["tgt"]]}


def _load_dates(cfg: DataConfig, split: str, seed: int) -> datasets.Dataset:
    splits = make_date_splits(
        seed=seed,
        train_size=cfg.generated_train_size,
        valid_size=cfg.generated_valid_size,
        test_size=cfg.generated_test_size,
    )
    names = {cfg.train_split: "train", cfg.valid_split: "valid", cfg.test_split: "test"}
    if split not in names:
        raise S2SError(f"the generated dates task has splits {sorted(names)}, not {split!r}")
    pairs = splits[names[split]]
    return datasets.Dataset.from_dict({"src": [s for s, _ in pairs], "tgt": [t for _, t in pairs]})


def _corpus_dir(cfg: DataConfig) -> str:
    if not cfg.dir:
        raise S2SError(f"data.format={cfg.format.value} needs data.dir=PATH (the folder holding the corpus files)")
    if not os.path.isdir(cfg.dir):
        online = (
            f"; or, online, load it from the hub with data.format=hub (data.hub_name={cfg.hub_name})"
            if cfg.hub_name
            else ""
        )
        raise S2SError(
            f"data.dir={cfg.dir} is not a directory: "
            f"give the folder holding the {cfg.name} files with data.dir=PATH{online}"
        )
    return cfg.dir


def _existing_file(path: str, split: str) -> str:
    if not os.path.isfile(path):
        raise S2SError(f"corpus file {path} does not exist (needed for split {split!r})")
    if not os.access(path, os.R_OK):
        raise S2SError(f"corpus file {path} is not readable")
    return path


def _load_column(path: str, column: str) -> datasets.Dataset:
    """Read a UTF-8 file as one string column via `datasets`' text builder (cached as Arrow, memory-mapped)."""
    if os.path.getsize(path) == 0:
        return datasets.Dataset.from_dict({column: []}, features=datasets.Features({column: datasets.Value("string")}))
    try:
        dataset = datasets.load_dataset("text", data_files={"lines": path}, split="lines")
    except Exception as error:  # datasets wraps decoding errors in its own exception types
        cause = error
        while cause is not None and not isinstance(cause, UnicodeDecodeError):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, UnicodeDecodeError):
            raise S2SError(f"{path} is not valid UTF-8 ({cause.reason} at byte {cause.start})") from None
        raise S2SError(f"cannot read {path}: {type(error).__name__}: {error}") from None
    return dataset if column == "text" else dataset.rename_column("text", column)


def _load_text_pair(cfg: DataConfig, split: str) -> datasets.Dataset:
    directory = _corpus_dir(cfg)
    src_path = _existing_file(os.path.join(directory, f"{split}.{cfg.src_lang}"), split)
    tgt_path = _existing_file(os.path.join(directory, f"{split}.{cfg.tgt_lang}"), split)
    src, tgt = _load_column(src_path, "src"), _load_column(tgt_path, "tgt")
    if len(src) != len(tgt):
        raise S2SError(
            f"line counts differ: {src_path} has {len(src)} lines, {tgt_path} has {len(tgt)}; "
            "source and target files must be aligned line by line"
        )
    return datasets.concatenate_datasets([src, tgt], axis=1)


def _pairs_from_lines(path: str, parse: Callable[..., dict[str, list[str]]], **kwargs: str) -> datasets.Dataset:
    """Turn the lines of a file into pairs, a batch at a time: `parse(batch, row indices, path, **kwargs)`.

    The row index of a line is its line number minus one, so errors can name the line.
    """
    lines = _load_column(path, "text")
    if len(lines) == 0:
        return datasets.Dataset.from_dict({"src": [], "tgt": []}, features=_PAIR_FEATURES)
    return lines.map(
        parse,
        batched=True,
        with_indices=True,
        remove_columns=["text"],
        features=_PAIR_FEATURES,
        fn_kwargs={"path": path, **kwargs},
        desc=f"reading {os.path.basename(path)}",
    )


def _parse_tsv(batch: dict[str, list[str]], indices: list[int], path: str) -> dict[str, list[str]]:
    src, tgt = [], []
    for index, line in zip(indices, batch["text"]):
        fields = line.split("\t")
        if len(fields) != 2:
            raise S2SError(f"{path}:{index + 1}: expected source<TAB>target, found {len(fields)} field(s)")
        src.append(fields[0])
        tgt.append(fields[1])
    return {"src": src, "tgt": tgt}


def _parse_jsonl(
    batch: dict[str, list[str]], indices: list[int], path: str, src_lang: str, tgt_lang: str
) -> dict[str, list[str]]:
    src, tgt = [], []
    for index, line in zip(indices, batch["text"]):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise S2SError(f"{path}:{index + 1}: invalid JSON ({error.msg})") from None
        pair = row.get("translation", row) if isinstance(row, dict) else None
        if not isinstance(pair, dict) or src_lang not in pair or tgt_lang not in pair:
            raise S2SError(f"{path}:{index + 1}: expected an object with keys {src_lang!r} and {tgt_lang!r}")
        src.append(str(pair[src_lang]))
        tgt.append(str(pair[tgt_lang]))
    return {"src": src, "tgt": tgt}


def _load_tsv(cfg: DataConfig, split: str) -> datasets.Dataset:
    path = _existing_file(os.path.join(_corpus_dir(cfg), f"{split}.tsv"), split)
    return _pairs_from_lines(path, _parse_tsv)


def _load_jsonl(cfg: DataConfig, split: str) -> datasets.Dataset:
    path = _existing_file(os.path.join(_corpus_dir(cfg), f"{split}.jsonl"), split)
    return _pairs_from_lines(path, _parse_jsonl, src_lang=cfg.src_lang, tgt_lang=cfg.tgt_lang)


def _load_hub(cfg: DataConfig, split: str) -> datasets.Dataset:
    if not cfg.hub_name:
        raise S2SError("data.format=hub needs data.hub_name=NAME")
    try:
        dataset = datasets.load_dataset(cfg.hub_name, cfg.hub_config, split=split)
    except Exception as error:  # network, missing dataset or split: all user-fixable
        raise S2SError(
            f"could not load {cfg.hub_name!r} split {split!r} from the hub ({type(error).__name__}: {error}); "
            "offline, use local files with data.format=text data.dir=PATH"
        ) from None
    if "translation" in dataset.column_names:
        dataset = dataset.map(
            lambda row: {"src": row["translation"][cfg.src_lang], "tgt": row["translation"][cfg.tgt_lang]},
            remove_columns=dataset.column_names,
        )
    elif cfg.src_lang in dataset.column_names and cfg.tgt_lang in dataset.column_names:
        dataset = dataset.rename_columns({cfg.src_lang: "src", cfg.tgt_lang: "tgt"})
    else:
        raise S2SError(f"{cfg.hub_name}: no `translation` column and no columns {cfg.src_lang!r}/{cfg.tgt_lang!r}")
    return dataset.select_columns(["src", "tgt"])
