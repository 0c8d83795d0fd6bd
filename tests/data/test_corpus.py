"""Corpus loading from local files in every supported format, and its errors."""

from __future__ import annotations

import json
import os

import pytest

from s2s.config import CorpusFormat, DataConfig
from s2s.data.corpus import load_split
from s2s.errors import S2SError
from tests.conftest import ROOT, make_config


def files_config(directory, fmt: CorpusFormat, **extra) -> DataConfig:
    return DataConfig(name="t", format=fmt, dir=str(directory), src_lang="de", tgt_lang="en", **extra)


def test_text_pairs_keep_order_and_empty_lines(tmp_path):
    (tmp_path / "train.de").write_text("eins\n\ndrei\n", encoding="utf-8")
    (tmp_path / "train.en").write_text("one\ntwo\nthree\n", encoding="utf-8")
    data = load_split(files_config(tmp_path, CorpusFormat.text), "train")
    assert list(data["src"]) == ["eins", "", "drei"]
    assert list(data["tgt"]) == ["one", "two", "three"]


def test_text_pairs_stay_memory_mapped_arrow(tmp_path):
    (tmp_path / "train.de").write_text("eins\nzwei\n", encoding="utf-8")
    (tmp_path / "train.en").write_text("one\ntwo\n", encoding="utf-8")
    data = load_split(files_config(tmp_path, CorpusFormat.text), "train")
    assert data.column_names == ["src", "tgt"]
    assert len(data.cache_files) == 2  # one Arrow file per language, read where it lies


def test_text_pairs_with_different_line_counts_name_both_files(tmp_path):
    (tmp_path / "train.de").write_text("a\nb\nc\n", encoding="utf-8")
    (tmp_path / "train.en").write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(S2SError, match=r"train.de has 3 lines, .*train.en has 2"):
        load_split(files_config(tmp_path, CorpusFormat.text), "train")


def test_empty_corpus_files(tmp_path):
    (tmp_path / "train.de").write_text("")
    (tmp_path / "train.en").write_text("")
    with pytest.raises(S2SError, match=r"empty"):
        load_split(files_config(tmp_path, CorpusFormat.text), "train")
    (tmp_path / "train.tsv").write_text("")
    with pytest.raises(S2SError, match=r"empty"):
        load_split(files_config(tmp_path, CorpusFormat.tsv), "train")


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


def test_line_numbers_in_errors_count_across_read_batches(tmp_path):
    # lines are parsed a batch (1000 lines) at a time; the number must be the line's own
    lines = [json.dumps({"de": f"d{i}", "en": f"e{i}"}) for i in range(2600)]
    lines[2504] = "{not json"
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(S2SError, match=r"train.jsonl:2505: invalid JSON"):
        load_split(files_config(tmp_path, CorpusFormat.jsonl), "train")
    rows = [f"s{i}\tt{i}" for i in range(2600)]
    rows[1999] = "no tab here"
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(S2SError, match=r"train.tsv:2000: expected source<TAB>target, found 1 field"):
        load_split(files_config(tmp_path, CorpusFormat.tsv), "train")


def test_jsonl_skips_blank_lines(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"de": "a", "en": "b"}\n\n  \n{"de": "c", "en": "d"}\n', encoding="utf-8")
    data = load_split(files_config(tmp_path, CorpusFormat.jsonl), "train")
    assert list(data["src"]) == ["a", "c"] and list(data["tgt"]) == ["b", "d"]


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


@pytest.mark.parametrize("multi30k", [os.path.join(ROOT, "..", "shared", "data", "multi30k")])
def test_multi30k_local_files_load_in_both_directions(multi30k):
    if not os.path.isdir(multi30k):
        pytest.skip("Multi30k is not on this machine")
    cfg = make_config("data=multi30k", f"data.dir={multi30k}")
    de_en = load_split(cfg.data, "val")
    cfg.data.src_lang, cfg.data.tgt_lang = "en", "de"
    en_de = load_split(cfg.data, "val")
    assert len(de_en) == len(en_de) == 1014
    assert de_en[0]["src"] == en_de[0]["tgt"] and de_en[0]["tgt"] == en_de[0]["src"]
