"""`python -m s2s.score`: one line per pair, in order, equal to `Translator.score`; bad input is one clear error."""

from __future__ import annotations

import io

import pytest

from s2s.arguments import parse_overrides
from s2s.commands.score import USAGE, ScoreOptions, score_stream
from s2s.decoding.loading import load_translator
from s2s.errors import S2SError
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

SOURCES = ["3 March 1998", "Dienstag, 9. November 1989", "", "12/25/2001"]
TARGETS = ["1998-03-03", "1989-11-09", "2000-01-01", ""]


def score(run: str, data: bytes | str, *args: str) -> list[str]:
    options, search = parse_overrides([f"--model={run}", "--device=cpu", *args], ScoreOptions, USAGE)
    sink = io.StringIO()
    count = score_stream(
        options, search, io.BytesIO(data.encode() if isinstance(data, str) else data), sink, io.StringIO()
    )
    lines = sink.getvalue().split("\n")[:-1]
    assert len(lines) == count
    return lines


def test_each_pair_gets_its_scores_in_order_as_the_python_api(trained_run):
    data = "".join(f"{s}\t{t}\n" for s, t in zip(SOURCES, TARGETS))
    lines = score(trained_run, data, "--per-token", "--chunk-lines", "3")
    translator, _, _ = load_translator(trained_run, device="cpu")
    expected = translator.score(SOURCES, TARGETS)
    assert len(lines) == len(SOURCES)
    for line, want in zip(lines, expected):
        total, mean, pieces, token_scores = line.split("\t")
        assert float(total) == pytest.approx(want.score, abs=1e-4)
        assert float(mean) == pytest.approx(want.per_token, abs=1e-4)
        assert pieces.split(" ") == want.pieces and len(token_scores.split(" ")) == len(want.pieces)
    assert lines[3].split("\t")[2] == "</s>"  # a blank target is its EOS alone
    assert [line.split("\t")[:2] for line in score(trained_run, data)] == [line.split("\t")[:2] for line in lines]


def test_two_files_score_as_tab_separated_lines(trained_run, tmp_path):
    (tmp_path / "src.txt").write_text("".join(s + "\n" for s in SOURCES), encoding="utf-8")
    (tmp_path / "tgt.txt").write_text("".join(t + "\n" for t in TARGETS), encoding="utf-8")
    from_files = score(trained_run, b"", "--source", str(tmp_path / "src.txt"), "--target", str(tmp_path / "tgt.txt"))
    assert from_files == score(trained_run, "".join(f"{s}\t{t}\n" for s, t in zip(SOURCES, TARGETS)))
    (tmp_path / "short.txt").write_text("one\n", encoding="utf-8")
    with pytest.raises(S2SError, match="short.txt ends at line 1, before the other file"):
        score(trained_run, b"", "--source", str(tmp_path / "src.txt"), "--target", str(tmp_path / "short.txt"))


def test_an_ensemble_of_the_run_with_itself_scores_as_the_run(trained_run):
    data = "".join(f"{s}\t{t}\n" for s, t in zip(SOURCES, TARGETS))
    single = [float(line.split("\t")[0]) for line in score(trained_run, data)]
    double = [float(line.split("\t")[0]) for line in score(trained_run, data, f"--model={trained_run}")]
    assert double == pytest.approx(single, abs=1e-3)


@pytest.mark.parametrize(
    "data, args, message",
    [
        ("a\tb\nno tab\n", [], "input line 2 has no TAB"),
        (b"a\t\xff\n", [], "input line 1 is not valid UTF-8"),
        ("a\tb\n", ["--source", "x.txt"], "give both --source FILE and --target FILE"),
        ("a\tb\n", ["--chunk-lines", "0"], "chunk_lines must be at least 1"),
    ],
)
def test_bad_input_is_one_clear_error(trained_run, data, args, message):
    with pytest.raises(S2SError, match=message):
        score(trained_run, data, *args)


def test_the_command_exits_2_with_one_line_on_bad_input(trained_run, tmp_path):
    result = run_cli("s2s.score", [f"--model={trained_run}", "--device=cpu"], cwd=str(tmp_path), stdin=b"no tab\n")
    assert result.returncode == 2
    assert (
        result.stderr.decode().strip().splitlines()[-1]
        == "error: input line 1 has no TAB: score reads source<TAB>target lines"
    )
    result = run_cli("s2s.score", [f"--model={trained_run}", "--device=cpu"], cwd=str(tmp_path), stdin=b"a\tb\n")
    assert result.returncode == 0 and len(result.stdout.decode().splitlines()) == 1
