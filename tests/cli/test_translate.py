"""`s2s.translate` on hostile input: one output line per input line, whatever the bytes.

Most tests call `translate_stream` in-process on the session's trained run (a
subprocess costs seconds of start-up); one runs the command as a user types it.
"""

from __future__ import annotations

import io
import json
import os
import re

import pytest
import torch
from hydra import compose, initialize_config_dir
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from s2s.arguments import parse_overrides
from s2s.commands.translate import USAGE, TranslateOptions, translate_stream
from s2s.data.batching import make_batch
from s2s.data.subwords import load_tokenizers
from s2s.data.text import clean
from s2s.decoding.loading import load_translator
from s2s.decoding.search import greedy
from s2s.decoding.translator import forced_attention
from s2s.errors import S2SError
from s2s.precision import bf16_runs
from s2s.special_tokens import UNK
from tests.conftest import CONF_DIR, TINY, run_cli
from tests.helpers import CHARACTERS, SEPARATORS

PNG_HEADER = b"\x89PNG\r\n\x1a\n"


def translate(run: str, data: bytes | str, *args: str) -> tuple[list[str], str]:
    """Translate `data` with command-line style `args`; returns (output lines, stderr text)."""
    options, search = parse_overrides([f"--run={run}", "--device=cpu", *args], TranslateOptions, USAGE)
    source = io.BytesIO(data.encode() if isinstance(data, str) else data)
    sink, log = io.StringIO(), io.StringIO()
    count = translate_stream(options, search, source, sink, log)
    text = sink.getvalue()
    assert text.endswith("\n") or text == ""
    lines = text.split("\n")[:-1]
    assert len(lines) == count
    return lines, log.getvalue()


def expected_lines(data: bytes) -> int:
    """Lines end at b'\\n'; a last line without one still counts."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


# ---- bad input ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_mixed_bad_input_gives_one_defined_line_per_input_line(trained_run):
    lines = [
        "3 March 1998",
        "",
        "   ",
        "\t",
        "3\x00March\x071998",
        "3\x0bMarch\x0c\x1c\x1d\x1e1998",
        "3\x85March\u20281998\u2029",
        "日本語の日付",
        "😀 3 March 1998 🎉",
        "\ufeff3 March 1998",
        "3 March 1998\r",  # a CRLF line ending
    ]
    data = (
        "".join(line + "\n" for line in lines).encode() + b"3 March \xff\xfe1998\n" + b"3 March 1998"
    )  # no final newline
    out, log = translate(trained_run, data, "--on-invalid-utf8", "replace", "--chunk-lines", "3")
    assert len(out) == len(lines) + 2 and log == ""
    assert out[1] == out[2] == out[3] == ""  # empty and whitespace-only lines stay empty
    same_as_spaces, _ = translate(trained_run, "3 March 1998\n3 March\ufffd\ufffd1998\n")
    plain = same_as_spaces[0]
    assert out[4] == out[5] == out[6] == out[10] == out[12] == plain  # control characters read as spaces
    assert out[11] == same_as_spaces[1]  # invalid bytes read as U+FFFD
    assert all(len(line.splitlines()) <= 1 for line in out)


@pytest.mark.slow
def test_invalid_utf8_stops_with_the_line_number_across_chunks(trained_run):
    data = b"1 March 1998\n2 March 1998\n3 March 1998\n4 March 1998\n5 \xc3\x28 March\n"
    with pytest.raises(S2SError, match=r"input line 5 is not valid UTF-8.*--on-invalid-utf8 replace"):
        translate(trained_run, data, "--chunk-lines=2")


@pytest.mark.slow
@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(alphabet=CHARACTERS, max_size=40), max_size=8))
def test_any_text_lines_give_as_many_output_lines(trained_run, lines):
    data = "".join(line + "\n" for line in lines).encode("utf-8", errors="surrogatepass")
    out, _ = translate(trained_run, data, "--on-invalid-utf8=replace", "--max-input-tokens=6", "--chunk-lines=3")
    assert len(out) == len(lines)
    for line, translation in zip(lines, out):
        if not clean(line).strip():
            assert translation == ""


@pytest.mark.slow
@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["split", "truncate"]))
def test_any_bytes_give_one_output_line_per_input_line(trained_run, data, long_lines):
    out, _ = translate(
        trained_run, data, "--on-invalid-utf8", "replace", "--long-lines", long_lines, "--max-input-tokens", "5"
    )
    assert len(out) == expected_lines(data)


# ---- long lines --------------------------------------------------------------------------------


def _long_line(run_dir: str, repeats: int) -> tuple[str, int]:
    """A line of `repeats` equal sentences, and the subwords of one sentence."""
    sentence = "3 March 1998."
    tokenizer = load_tokenizers(run_dir).src
    one = tokenizer.encode(sentence)
    line = " ".join([sentence] * repeats)
    assert tokenizer.encode(line) == one * repeats  # each sentence is the same subwords wherever it stands
    return line, len(one)


@pytest.mark.slow
def test_long_line_split_translates_every_sentence(trained_run):
    line, size = _long_line(trained_run, 5)
    single, _ = translate(trained_run, "3 March 1998.\n")
    out, log = translate(trained_run, f"x\n{line}\n", "--max-input-tokens", str(size))
    assert out[1] == " ".join([single[0]] * 5) and log == ""


@pytest.mark.slow
def test_long_line_split_is_the_default_up_to_the_runs_max_len(trained_run):
    line, size = _long_line(trained_run, 10)
    max_len = OmegaConf.load(os.path.join(trained_run, "config.yaml")).data.max_len
    assert 10 * size > max_len
    out, log = translate(trained_run, line + "\n")
    assert (
        log == ""
        and out == translate(trained_run, line + "\n", "--long-lines=split", f"--max-input-tokens={max_len}")[0]
    )


@pytest.mark.slow
def test_long_line_truncate_warns_with_the_line_number(trained_run):
    line, size = _long_line(trained_run, 5)
    single, _ = translate(trained_run, "3 March 1998.\n")
    data = f"{line}\nshort\n\n{line}\n"
    out, log = translate(
        trained_run, data, "--long-lines", "truncate", "--max-input-tokens", str(size), "--chunk-lines", "2"
    )
    assert out[0] == out[3] == single[0] and out[2] == ""
    hint = "(use --long-lines split to translate it in full)"
    assert log.splitlines() == [
        f"warning: line 1 has {5 * size} subwords; truncated to {size} {hint}",
        f"warning: line 4 has {5 * size} subwords; truncated to {size} {hint}",
    ]


# ---- options -----------------------------------------------------------------------------------


def test_flags_mean_the_same_as_key_value():
    flags = parse_overrides(
        [
            "--run",
            "r",
            "--checkpoint=last",
            "--device",
            "cpu",
            "--beam-size",
            "4",
            "--n-best=2",
            "--batch-size",
            "8",
            "--scores",
            "--attention-plots",
            "plots",
            "--on-invalid-utf8",
            "replace",
            "--long-lines",
            "truncate",
            "--max-input-tokens",
            "30",
            "--chunk-lines",
            "7",
            "--search.length-penalty",
            "0.5",
            "--search.sampling",
        ],
        TranslateOptions,
        USAGE,
    )
    keys = parse_overrides(
        [
            "run=r",
            "checkpoint=last",
            "device=cpu",
            "search.beam_size=4",
            "search.n_best=2",
            "search.batch_size=8",
            "scores=true",
            "attention_plots=plots",
            "on_invalid_utf8=replace",
            "long_lines=truncate",
            "max_input_tokens=30",
            "chunk_lines=7",
            "search.length_penalty=0.5",
            "search.sampling=true",
        ],
        TranslateOptions,
        USAGE,
    )
    assert flags == keys
    assert flags[1] == ["beam_size=4", "n_best=2", "batch_size=8", "length_penalty=0.5", "sampling=true"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--beam-sise", "3"], "unknown option '--beam-sise'; did you mean '--beam-size'?"),
        (["--long-lines", "wrap"], "bad option --long-lines: Invalid value 'wrap', expected one of [split, truncate]"),
        (["--run"], "option --run needs a value"),
        (["-b", "3"], "unknown option '-b'"),
        (["beam_size=3"], "did you mean 'search.beam_size'?"),
    ],
)
def test_bad_options_are_one_clear_error(args, message):
    with pytest.raises(S2SError) as error:
        parse_overrides(args, TranslateOptions, USAGE)
    assert message in str(error.value)


@pytest.mark.slow
def test_n_best_implies_scores(trained_run):
    out, _ = translate(trained_run, "3 March 1998\n\n4 May 2001\n", "--beam-size", "3", "--n-best", "2")
    for line in (out[0], out[2]):
        fields = line.split("\t")
        assert len(fields) == 4 and float(fields[1]) >= float(fields[3])
    assert out[1] == "\t0.0000"


@pytest.mark.slow
def test_command_line_with_flags(trained_run, tmp_path):
    line, size = _long_line(trained_run, 3)
    data = b"3 March 1998\nbad \xff byte\n" + f"{line}\n\u2028\n".encode()
    args = [
        f"--run={trained_run}",
        "--on-invalid-utf8",
        "replace",
        "--long-lines",
        "truncate",
        "--max-input-tokens",
        str(size),
        "--beam-size",
        "2",
    ]
    result = run_cli("s2s.translate", args, cwd=str(tmp_path), stdin=data)
    assert result.returncode == 0, result.stderr.decode()
    assert len(result.stdout.decode("utf-8").split("\n")) == 4 + 1
    assert result.stderr.decode().splitlines() == [
        f"warning: line 3 has {3 * size} subwords; truncated to {size} (use --long-lines split to translate it in full)"
    ]


@pytest.mark.slow
@pytest.mark.skipif(
    bf16_runs(torch.device("cpu")), reason="this CPU runs bf16; the error is for CPUs without bf16 kernels"
)
def test_bf16_on_a_cpu_without_bf16_kernels_is_a_one_line_error(trained_run, tmp_path):
    result = run_cli(
        "s2s.translate",
        [f"--run={trained_run}", "--device=cpu", "--precision", "bf16"],
        cwd=str(tmp_path),
        stdin=b"3 March 1998\n",
    )
    assert result.returncode == 2 and result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: search.precision=bf16 needs"), lines
    auto = run_cli(
        "s2s.translate",
        [f"--run={trained_run}", "--device=cpu", "--precision", "auto"],
        cwd=str(tmp_path),
        stdin=b"3 March 1998\n",
    )
    assert auto.returncode == 0 and len(auto.stdout.decode().splitlines()) == 1


# ---- attention plots ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("search", [[], ["--beam-size", "3"]])
def test_attention_plots_one_png_per_non_empty_line(trained_run, tmp_path, search):
    line, size = _long_line(trained_run, 2)
    lines = ["3 March 1998", "", "  ", "日本 😀 $x$ \\frac{", line]
    out, _ = translate(
        trained_run,
        "\n".join(lines) + "\n",
        "--attention-plots",
        str(tmp_path / "plots"),
        "--max-input-tokens",
        str(size),
        *search,
    )
    assert len(out) == 5
    assert sorted(os.listdir(tmp_path / "plots")) == ["line-000001.png", "line-000004.png", "line-000005.png"]
    for name in os.listdir(tmp_path / "plots"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == PNG_HEADER


@pytest.mark.slow
def test_forced_attention_equals_greedy_search_attention(trained_run):
    translator, _, _ = load_translator(trained_run, "best", "cpu")
    ids = translator.tokenizers.encode_src(["3 March 1998", "Dienstag, 9. November 1989", "1"])
    batch = make_batch(ids, None, range(3))
    hypotheses = greedy(translator.model, batch, translator.search, return_attention=True)
    forced = forced_attention(translator.model, batch, [h.tokens for h in hypotheses])
    for h, weights, length in zip(hypotheses, forced, batch.src_lengths.tolist()):
        assert weights.shape == (len(h.tokens) + 1, length)
        torch.testing.assert_close(weights, h.attention[:, :length].cpu())
        torch.testing.assert_close(weights.sum(dim=1), torch.ones(len(h.tokens) + 1))


@pytest.mark.slow
def test_attention_plots_of_a_model_without_attention_is_a_clear_error(tmp_path):
    from s2s.commands.train import run

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        composed = compose(
            "config", overrides=[*TINY, "model.decoder.attention=none", "trainer.max_steps=2", "trainer.valid_every=2"]
        )
    run_dir = str(tmp_path / "run")
    run(OmegaConf.to_object(composed), run_dir)
    out, _ = translate(run_dir, "3 March 1998\n\n")
    assert len(out) == 2  # it translates
    with pytest.raises(S2SError, match="this model has no attention to plot"):
        translate(run_dir, "3 March 1998\n", "--attention-plots", str(tmp_path / "plots"))


# ---- the run's sentencepiece model -------------------------------------------------------------


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(
    st.text(
        alphabet=st.one_of(st.characters(exclude_categories=("Cs",)), st.sampled_from(SEPARATORS + ["\n", "⁇", "."]))
    )
)
def test_subword_round_trip(trained_run, text):
    """What sentencepiece (nmt_nfkc normalization) guarantees, checked on the run's model.

    Decoding never gives a line break: line breakers are normalized to spaces or are
    unknown, and an unknown piece decodes to ' ⁇ '. Re-encoding the decoded text gives
    the same ids when nothing was unknown; with unknown pieces it need not (the
    spaces around ' ⁇ ' become pieces of their own), but one more round changes nothing.
    """
    tokenizer = load_tokenizers(trained_run).src
    ids = tokenizer.encode(text)
    decoded = tokenizer.decode(ids)
    assert "\n" not in decoded and len(decoded.splitlines()) <= 1
    again = tokenizer.encode(decoded)
    if UNK not in ids:
        assert again == ids
    assert tokenizer.encode(tokenizer.decode(again)) == again


@pytest.mark.slow
def test_sampling_is_reproducible_with_its_seed(trained_run):
    text = "".join(f"{day} March 1998\n" for day in range(1, 13))
    sample = ("search.sampling=true", "search.temperature=3.0")
    first, _ = translate(trained_run, text, *sample, "--seed", "5")
    again, _ = translate(trained_run, text, *sample, "--seed", "5")
    other, _ = translate(trained_run, text, *sample, "--seed", "6")
    assert first == again
    assert first != other


@pytest.mark.slow
@pytest.mark.skipif(not bf16_runs(torch.device("cpu")), reason="this CPU has no bf16 kernels (no AVX512)")
def test_bf16_decoding_uses_a_bf16_copy_and_stays_close_to_fp32(trained_run):
    """--precision bf16 decodes with bf16 weights; scores stay fp32 and close to the fp32 model's."""
    fp32, _, _ = load_translator(trained_run, "best", "cpu", ["beam_size=3", "n_best=1"])
    bf16, _, _ = load_translator(trained_run, "best", "cpu", ["beam_size=3", "n_best=1", "precision=bf16"])
    assert {p.dtype for p in bf16.model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in fp32.model.parameters()} == {torch.float32}
    lines = ["3 March 1998", "Dienstag, 9. November 1989", "12/31/1999", ""]
    exact, rounded = fp32.translate_detailed(lines), bf16.translate_detailed(lines)
    assert len(rounded) == len(lines) and rounded[-1].text == ""
    for a, b in zip(exact[:3], rounded[:3]):
        (_, score_a), (_, score_b) = a.n_best[0], b.n_best[0]
        assert isinstance(score_b, float) and abs(score_a - score_b) < 0.1 * max(1.0, abs(score_a))
    out, _ = translate(trained_run, "\n".join(lines) + "\n", "--precision", "bf16", "--beam-size", "3")
    assert len(out) == len(lines)


# ---- JSON lines with constraints; ensembles ----------------------------------------------------------


@pytest.mark.slow
def test_jsonl_input_applies_each_lines_constraints_as_the_python_api(trained_run):
    items = [
        {"text": "3 March 1998", "constraints": ["1998"]},
        {"text": "Dienstag, 9. November 1989", "prefix": "19", "avoid": ["11"]},
        {},  # a blank line: a blank output line
        {"text": "12/25/2001"},
    ]
    data = "".join((json.dumps(item) if item else "") + "\n" for item in items)
    lines, log = translate(trained_run, data, "--input-format", "jsonl", "--beam-size", "3")
    translator, _, _ = load_translator(trained_run, device="cpu")
    expected = translator.translate_detailed(
        ["3 March 1998", "Dienstag, 9. November 1989", "", "12/25/2001"],
        constraints=[["1998"], [], [], []],
        prefix=[None, "19", None, None],
        avoid=[[], ["11"], [], []],
        beam_size=3,
    )
    assert lines == [t.text for t in expected]
    assert "1998" in lines[0] and lines[1].startswith("19") and "11" not in lines[1] and lines[2] == ""
    assert all(f"constraint {c!r}" in log for t in expected for c in t.unmet_constraints)


@pytest.mark.slow
@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "line 2 is not valid JSON"),
        ('{"txt": "x"}', "line 2: unknown key 'txt'"),
        ('{"constraints": ["a"]}', 'line 2: no "text" key'),
        ('{"text": "x", "avoid": "a"}', "line 2: 'avoid' must be a JSON list"),
        ('{"text": "x", "constraints": [1]}', "line 2: 'constraints' must be a list of strings"),
        ('["x"]', "line 2: expected a JSON object"),
    ],
)
def test_bad_jsonl_lines_are_one_error_naming_the_line(trained_run, line, message):
    with pytest.raises(S2SError, match=re.escape(message)):
        translate(trained_run, '{"text": "3 March 1998"}\n' + line + "\n", "--input-format", "jsonl")


@pytest.mark.slow
def test_a_repeated_model_is_an_ensemble_that_translates_as_the_model(trained_run):
    data = "3 March 1998\nDienstag, 9. November 1989\n\n12/25/2001\n"
    single, _ = translate(trained_run, data, "--beam-size", "3", "--scores")
    double, _ = translate(trained_run, data, f"--model={trained_run}", "--beam-size", "3", "--scores")
    assert [line.split("\t")[0] for line in double] == [line.split("\t")[0] for line in single]
    for one, two in zip(single, double):
        if one:
            assert float(two.split("\t")[1]) == pytest.approx(float(one.split("\t")[1]), abs=1e-3)
    with pytest.raises(S2SError, match="combine must be probs or log_probs"):
        translate(trained_run, data, f"--model={trained_run}", "--combine", "sum")
