"""End-to-end runs of the three commands in subprocesses, as a user types them."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import TINY, run_cli

pytestmark = pytest.mark.slow


def test_train_writes_a_complete_run_directory(trained_run):
    for name in (
        "config.yaml",
        "spm.model",
        "train.log",
        "metrics.json",
        "checkpoints/best.pt",
        "checkpoints/last.pt",
        ".hydra/config.yaml",
    ):
        assert os.path.isfile(os.path.join(trained_run, name)), name
    with open(os.path.join(trained_run, "metrics.json")) as file:
        summary = json.load(file)
    assert summary["steps"] == 12
    assert {"bleu", "chrf", "exact_match", "loss", "ppl"} <= set(summary["last"])


def test_translate_defaults_to_latest_run_and_keeps_one_line_per_input(trained_run):
    workdir = os.path.dirname(os.path.dirname(os.path.dirname(trained_run)))  # .../work/outputs/DATE/TIME
    text = "3 March 1998\n\n   \nDienstag, 9. November 1989\n3 de marzo de 1998\n"
    result = run_cli("s2s.translate", [], cwd=workdir, stdin=text.encode())
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().split("\n")
    assert lines[-1] == "" and len(lines) - 1 == 5
    assert lines[1] == "" and lines[2] == ""  # blank input lines give blank output lines
    assert not os.path.exists(os.path.join(workdir, "outputs", "translate"))
    run_dirs = [d for d, sub, _ in os.walk(os.path.join(workdir, "outputs")) if "checkpoints" in sub]
    assert len(run_dirs) == 1  # translate made no run directory of its own


def test_translate_streams_in_chunks_with_beam_and_scores(trained_run, tmp_path):
    text = "".join(f"{day} March 1998\n" for day in range(1, 8))
    result = run_cli(
        "s2s.translate",
        [f"run={trained_run}", "chunk_lines=3", "search.beam_size=3", "search.n_best=2", "scores=true"],
        cwd=str(tmp_path),
        stdin=text.encode(),
    )
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 7
    for line in lines:
        fields = line.split("\t")
        assert len(fields) == 4  # two hypotheses, each with its score
        assert float(fields[1]) >= float(fields[3])


def test_evaluate_translates_test_split_and_ends_with_json(trained_run, tmp_path):
    result = run_cli("s2s.evaluate", [f"run={trained_run}", f"output={tmp_path}/hyp.txt"], cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode().splitlines()
    metrics = json.loads(out[-1])
    assert set(metrics) == {"bleu", "bleu_lc", "chrf", "exact_match"}  # no Moses BLEU for the dates task
    assert any("nrefs:1|case:mixed" in line for line in out)  # the sacrebleu signature
    assert len((tmp_path / "hyp.txt").read_text().splitlines()) == 24


def test_evaluate_scores_files(tmp_path):
    (tmp_path / "hyp").write_text("a cat sat on the mat today\nthe dog ran in the park\n")
    (tmp_path / "ref").write_text("a cat sat on the mat today\nthe dog ran in the big park\n")
    result = run_cli("s2s.evaluate", [f"hyp={tmp_path}/hyp", f"ref={tmp_path}/ref"], cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr.decode()
    metrics = json.loads(result.stdout.decode().splitlines()[-1])
    assert metrics["exact_match"] == 50.0
    assert 0 < metrics["bleu"] < 100


def _one_line_error(result) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr.decode()[-2000:])
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0]


def test_unknown_config_key_is_one_line_with_a_suggestion(tmp_path):
    line = _one_line_error(run_cli("s2s.train", ["model.decoder.cel=gru"], cwd=str(tmp_path)))
    assert "model.decoder.cell" in line
    assert not (tmp_path / "outputs").exists()


def test_unwritable_run_directory_is_one_line(tmp_path):
    (tmp_path / "a_file").write_text("x")
    line = _one_line_error(run_cli("s2s.train", [f"hydra.run.dir={tmp_path}/a_file/run"], cwd=str(tmp_path)))
    assert "cannot write to the run directory" in line


def test_layer_norm_with_an_elman_decoder_is_one_line(tmp_path):
    line = _one_line_error(
        run_cli("s2s.train", [*TINY, "model.decoder.cell=rnn", "model.decoder.layer_norm=true"], cwd=str(tmp_path))
    )
    assert "layer_norm=true needs model.decoder.cell=lstm or gru, not rnn" in line


def test_shared_embeddings_with_separate_vocabularies_is_one_line(tmp_path):
    line = _one_line_error(
        run_cli("s2s.train", [*TINY, "data.subword.joint=false", "model.share_embeddings=true"], cwd=str(tmp_path))
    )
    assert "model.share_embeddings=true needs one joint vocabulary (data.subword.joint=true)" in line


def test_wrong_type_fails_at_start_up(tmp_path):
    line = _one_line_error(run_cli("s2s.train", ["optim.lr=fast"], cwd=str(tmp_path)))
    assert "optim.lr" in line


def test_missing_data_dir_is_a_clear_error(tmp_path):
    line = _one_line_error(run_cli("s2s.train", ["data=multi30k", f"data.dir={tmp_path}/nowhere"], cwd=str(tmp_path)))
    assert "nowhere" in line


def test_mismatched_line_counts_name_both_files(tmp_path):
    (tmp_path / "train.de").write_text("a\nb\nc\n")
    (tmp_path / "train.en").write_text("a\nb\n")
    line = _one_line_error(
        run_cli(
            "s2s.train",
            ["data=files", f"data.dir={tmp_path}", "data.src_lang=de", "data.tgt_lang=en", *TINY],
            cwd=str(tmp_path),
        )
    )
    assert "train.de has 3 lines" in line and "train.en has 2" in line


def test_empty_corpus_is_a_clear_error(tmp_path):
    (tmp_path / "train.de").write_text("")
    (tmp_path / "train.en").write_text("")
    line = _one_line_error(
        run_cli(
            "s2s.train",
            ["data=files", f"data.dir={tmp_path}", "data.src_lang=de", "data.tgt_lang=en", *TINY],
            cwd=str(tmp_path),
        )
    )
    assert "empty" in line


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    line = _one_line_error(run_cli("s2s.translate", [f"run={tmp_path}/missing"], cwd=str(tmp_path), stdin=b"x\n"))
    assert "missing" in line
    line = _one_line_error(run_cli("s2s.translate", [], cwd=str(tmp_path), stdin=b"x\n"))
    assert "no trained run" in line


def test_corrupt_checkpoint_is_a_clear_error(trained_run, tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(open(os.path.join(trained_run, "checkpoints", "best.pt"), "rb").read()[:1000])
    line = _one_line_error(run_cli("s2s.translate", [f"run={broken}"], cwd=str(tmp_path), stdin=b"x\n"))
    assert "broken.pt" in line


def test_invalid_utf8_input_names_the_line(trained_run, tmp_path):
    line = _one_line_error(
        run_cli("s2s.translate", [f"run={trained_run}"], cwd=str(tmp_path), stdin=b"3 March 1998\nbad \xff byte\n")
    )
    assert "line 2" in line and "UTF-8" in line


def test_sweep_runs_each_combination(tmp_path):
    args = [
        "-m",
        "model.decoder.cell=gru,lstm",
        *[a.replace("trainer.max_steps=12", "trainer.max_steps=3") for a in TINY],
        "trainer.valid_every=3",
    ]
    result = run_cli("s2s.train", args, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    summaries = [
        os.path.join(d, "metrics.json") for d, _, files in os.walk(tmp_path / "multirun") if "metrics.json" in files
    ]
    assert len(summaries) == 2
