"""Corpus loading from local files in every supported format, and its errors."""

from __future__ import annotations

import json

import pytest

from s2s.config import CorpusFormat, DataConfig
from s2s.corpus import load_split
from s2s.errors import S2SError


def files_config(directory, fmt: CorpusFormat, **extra) -> DataConfig:
    return DataConfig(name="t", format=fmt, dir=str(directory), src_lang="de", tgt_lang="en", **extra)


def test_text_pairs_keep_order_and_empty_lines(tmp_path):
    (tmp_path / "train.de").write_text("eins\n\ndrei\n", encoding="utf-8")
    (tmp_path / "train.en").write_text("one\ntwo\nthree\n", encoding="utf-8")
    data = load_split(files_config(tmp_path, CorpusFormat.text), "train")
    assert list(data["src"]) == ["eins", "", "drei"]
    assert list(data["tgt"]) == ["one", "two", "three"]


def test_tsv(tmp_path):
    (tmp_path / "valid.tsv").write_text('ein "Haus"\ta "house"\nzwei\ttwo\n', encoding="utf-8")
    data = load_split(files_config(tmp_path, CorpusFormat.tsv), "valid")
    assert list(data["src"]) == ['ein "Haus"', "zwei"] and list(data["tgt"]) == ['a "house"', "two"]


def test_tsv_with_wrong_field_count_names_the_line(tmp_path):
    (tmp_path / "valid.tsv").write_text("a\tb\nonly one field\n", encoding="utf-8")
    with pytest.raises(S2SError, match=r"valid.tsv:2"):
        load_split(files_config(tmp_path, CorpusFormat.tsv), "valid")


def test_jsonl_flat_and_translation_objects(tmp_path):
    rows = [{"de": "Hallo", "en": "Hello"}, {"translation": {"de": "Welt", "en": "World"}}]
    (tmp_path / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    data = load_split(files_config(tmp_path, CorpusFormat.jsonl), "test")
    assert list(data["src"]) == ["Hallo", "Welt"] and list(data["tgt"]) == ["Hello", "World"]


def test_jsonl_missing_language_key(tmp_path):
    (tmp_path / "test.jsonl").write_text('{"de": "Hallo"}\n', encoding="utf-8")
    with pytest.raises(S2SError, match=r"test.jsonl:1"):
        load_split(files_config(tmp_path, CorpusFormat.jsonl), "test")


def test_missing_split_file(tmp_path):
    (tmp_path / "train.de").write_text("a\n")
    with pytest.raises(S2SError, match=r"train.en does not exist"):
        load_split(files_config(tmp_path, CorpusFormat.text), "train")


def test_invalid_utf8_corpus(tmp_path):
    (tmp_path / "train.de").write_bytes(b"gut\n\xff\xfe kaputt\n")
    (tmp_path / "train.en").write_text("good\nbroken\n")
    with pytest.raises(S2SError, match=r"not valid UTF-8"):
        load_split(files_config(tmp_path, CorpusFormat.text), "train")


def test_lowercase_option(tmp_path):
    (tmp_path / "train.de").write_text("Groß\n", encoding="utf-8")
    (tmp_path / "train.en").write_text("Big\n", encoding="utf-8")
    data = load_split(files_config(tmp_path, CorpusFormat.text, lowercase=True), "train")
    assert data[0] == {"src": "groß", "tgt": "big"}


def test_generated_dates_splits():
    cfg = DataConfig(generated_train_size=50, generated_valid_size=5, generated_test_size=7)
    assert len(load_split(cfg, "train")) == 50 and len(load_split(cfg, "test")) == 7
    with pytest.raises(S2SError, match="splits"):
        load_split(cfg, "dev")


def test_hub_without_name_is_a_clear_error():
    with pytest.raises(S2SError, match="hub_name"):
        load_split(DataConfig(format=CorpusFormat.hub), "train")
