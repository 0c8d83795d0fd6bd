"""The model file (s2s/model_file.py, `python -m s2s.export`): it decodes exactly as its run does, carries
its card, stores bf16/int8 weights, and is refused with one line when damaged or too new."""

from __future__ import annotations

import io
import os

import pytest
import torch

import s2s
from s2s.commands.export import ExportOptions, export
from s2s.errors import S2SError
from s2s.model_file import FORMAT_VERSION, read_model, restore_weights, store_weights
from tests.conftest import run_cli

LINES = ["3 March 1998", "Dienstag, 9. November 1989", "", "12/25/2001", "1 janvier 2000"]


@pytest.fixture(scope="module")
def model_file(trained_run, tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("export") / "dates.s2s")
    export(ExportOptions(model=trained_run, out=path, device="cpu"), [], log=io.StringIO())
    return path


def test_model_file_translates_as_its_run(trained_run, model_file):
    from_run, from_file = s2s.load(trained_run, device="cpu"), s2s.load(model_file, device="cpu")
    assert from_file.translate(LINES) == from_run.translate(LINES)
    run_best = from_run.translate_detailed(LINES, beam_size=3, n_best=2)
    file_best = from_file.translate_detailed(LINES, beam_size=3, n_best=2)
    assert [t.n_best for t in file_best] == [t.n_best for t in run_best]


def test_model_card_has_languages_scores_and_version(trained_run, model_file):
    card = read_model(model_file).card
    assert card["name"] == "dates" and card["s2s_version"] == s2s.__version__
    assert (card["source_lang"], card["target_lang"]) == ("text", "iso")
    assert card["parameters"] == sum(p.numel() for p in s2s.load(trained_run, device="cpu").model.parameters())
    assert set(card["scores"]) == {"valid", "test"}
    for scores in card["scores"].values():
        assert scores["bleu_signature"].startswith("nrefs:1") and 0 <= scores["bleu"] <= 100
    assert card["scores"]["test"]["sentences"] == 24
    assert card["checkpoint"] == "best.pt" and card["step"] > 0


def test_evaluate_scores_a_model_file_as_its_run(trained_run, model_file):
    assert s2s.evaluate(model_file, device="cpu")["bleu"] == s2s.evaluate(trained_run, device="cpu")["bleu"]
    assert read_model(model_file).card["scores"]["test"]["bleu"] == s2s.evaluate(model_file, device="cpu")["bleu"]


def test_search_options_become_the_files_defaults(trained_run, tmp_path):
    path = str(tmp_path / "beam.s2s")
    export(ExportOptions(model=trained_run, out=path, scores=False, device="cpu"), ["beam_size=3"], log=io.StringIO())
    translator = s2s.load(path, device="cpu")
    assert translator.search.beam_size == 3
    assert translator.translate(LINES) == s2s.load(trained_run, device="cpu").translate(LINES, beam_size=3)


@pytest.mark.parametrize("storage", ["bf16", "int8"])
def test_reduced_storage_records_the_fp32_score(trained_run, tmp_path, storage):
    path = str(tmp_path / f"{storage}.s2s")
    card = export(ExportOptions(model=trained_run, out=path, precision=storage, device="cpu"), [], log=io.StringIO())
    assert card["storage"] == storage
    assert card["scores"]["test"]["bleu_fp32"] == s2s.evaluate(trained_run, device="cpu")["bleu"]
    assert len(s2s.load(path, device="cpu").translate(LINES)) == len(LINES)


def test_int8_storage_rounds_each_row_to_within_half_a_step():
    torch.manual_seed(0)
    weights = {"w": torch.randn(64, 128) * torch.linspace(0.1, 3, 64)[:, None], "bias": torch.randn(64)}
    stored, scales = store_weights(weights, "int8")
    assert stored["w"].dtype == torch.int8 and stored["bias"].dtype == torch.float32 and set(scales) == {"w"}
    restored = restore_weights(stored, scales)
    step = weights["w"].abs().amax(dim=1, keepdim=True) / 127
    assert ((restored["w"] - weights["w"]).abs() <= step / 2 + 1e-6).all()
    assert torch.equal(restored["bias"], weights["bias"])
    bf16, _ = store_weights(weights, "bf16")
    assert bf16["w"].dtype == torch.bfloat16
    assert torch.allclose(restore_weights(bf16, {})["w"], weights["w"], rtol=1e-2)


def _damaged(model_file: str, tmp_path, change) -> str:
    state = torch.load(model_file, weights_only=True)
    change(state)
    path = str(tmp_path / "damaged.s2s")
    torch.save(state, path)
    return path


def test_changed_weights_are_refused_by_the_checksum(model_file, tmp_path):
    def flip(state):
        name = next(iter(state["weights"]))
        state["weights"][name].view(-1)[0] += 1.0

    with pytest.raises(S2SError, match="checksum does not match"):
        s2s.load(_damaged(model_file, tmp_path, flip), device="cpu")


def test_a_newer_format_is_refused_with_upgrade_advice(model_file, tmp_path):
    path = _damaged(model_file, tmp_path, lambda state: state.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(S2SError, match="upgrade s2s"):
        s2s.load(path, device="cpu")


def test_a_missing_part_is_named(model_file, tmp_path):
    with pytest.raises(S2SError, match="lacks tokenizers"):
        s2s.load(_damaged(model_file, tmp_path, lambda state: state.pop("tokenizers")), device="cpu")


def test_truncated_file_is_refused(model_file, tmp_path):
    path = tmp_path / "truncated.s2s"
    data = open(model_file, "rb").read()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(S2SError, match="cannot read model file or checkpoint"):
        s2s.load(str(path), device="cpu")


class Payload:  # a pickled class instance: loading it would run code, so weights_only refuses it
    pass


def test_a_file_that_would_run_code_is_refused(tmp_path):
    path = str(tmp_path / "code.s2s")
    torch.save({"format": "s2s-model", "card": Payload()}, path)
    with pytest.raises(S2SError, match="cannot read model file or checkpoint"):
        s2s.load(path, device="cpu")


@pytest.mark.slow
def test_export_and_translate_command_line(trained_run, tmp_path):
    out = str(tmp_path / "cli.s2s")
    result = run_cli("s2s.export", ["--run", trained_run, "--out", out, "--precision", "bf16"], cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert os.path.isfile(out) and b'"storage": "bf16"' in result.stdout
    stdin = "\n".join(LINES).encode() + b"\n"
    from_file = run_cli("s2s.translate", ["--model", out, "--device", "cpu"], cwd=str(tmp_path), stdin=stdin)
    assert from_file.returncode == 0, from_file.stderr.decode()[-2000:]
    assert from_file.stdout.decode().split("\n")[:-1] == s2s.load(out, device="cpu").translate(LINES)
    missing = run_cli("s2s.export", ["--run", trained_run], cwd=str(tmp_path))
    assert (
        missing.returncode == 2 and missing.stderr.decode().strip() == "error: give the file to write: --out model.s2s"
    )
