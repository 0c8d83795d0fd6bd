"""docs/configuration.md is current, and names every config key once, each with a meaning."""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from s2s.config import Config

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "config_reference.py"
DOC = ROOT / "docs" / "configuration.md"
REGENERATE = "python -m scripts.config_reference"


def load_script():
    spec = importlib.util.spec_from_file_location("config_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the script's annotations through sys.modules
    spec.loader.exec_module(module)
    return module


reference = load_script()


def leaf_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of `cls` whose value is not itself a dataclass."""
    hints = typing.get_type_hints(cls)
    keys = []
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        if dataclasses.is_dataclass(hints[f.name]):
            keys += leaf_keys(hints[f.name], key + ".")
        else:
            keys.append(key)
    return keys


def table_rows(page: str) -> list[tuple[str, list[str]]]:
    """(key, cells) of each table row whose first cell is a code-formatted key."""
    rows = []
    for line in page.splitlines():
        match = re.match(r"\| `([^`]+)` \|", line)
        if match:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            rows.append((match.group(1), cells))
    return rows


def test_page_is_current():
    with open(DOC, encoding="utf-8", newline="") as f:
        committed = f.read()
    assert committed == reference.render(), f"docs/configuration.md is stale: run {REGENERATE}"


def test_every_key_is_one_row():
    counts = collections.Counter(key for key, _ in table_rows(reference.render()))
    keys = leaf_keys()
    assert {k: n for k, n in counts.items() if n != 1} == {}
    assert sorted(counts) == sorted(keys)


def test_every_key_has_a_meaning():
    rows = dict(table_rows(reference.render()))
    missing = [key for key in leaf_keys() if not rows[key][3]]
    assert missing == [], (
        f"no comment in s2s/config.py for {missing}: end each field's line with `# what it does`, then run {REGENERATE}"
    )


def test_rows_show_type_and_default():
    rows = dict(table_rows(reference.render()))
    assert rows["model.decoder.cell"][1:3] == [
        r"lstm \| gru \| rnn \| peephole_lstm",
        f"`{Config().model.decoder.cell.value}`",
    ]
    assert rows["data.dir"][1] == "optional str"
    assert rows["optim.betas"][1] == "tuple[float, float]"
    assert rows["seed"][2] == f"`{Config().seed}`"


def test_comment_above_a_field_and_enum_member_comments():
    page = reference.render()
    assert "| `data.subword.sampling_alpha` | float |" in page
    assert dict(table_rows(page))["data.subword.sampling_alpha"][3].startswith("subword regularization")
    assert "- `bahdanau`: additive: v^T tanh(W_k k + W_q q)" in page


class _Sample:
    plain: int = 1  # trailing
    # above, first line
    # and second line
    above: int = 2
    # separated by a blank line, so it belongs to nothing

    bare: int = 3
    both: int = 4  # the trailing one wins


def test_field_comments():
    assert reference.field_comments(_Sample) == {
        "plain": "trailing",
        "above": "above, first line and second line",
        "bare": "",
        "both": "the trailing one wins",
    }


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True)


@pytest.mark.slow
def test_check_flags_a_stale_copy(tmp_path):
    copy = tmp_path / "configuration.md"
    written = run_script("--path", str(copy))
    assert written.returncode == 0, written.stderr
    assert copy.read_text(encoding="utf-8") == reference.render()

    fresh = run_script("--check", "--path", str(copy))
    assert fresh.returncode == 0, fresh.stderr

    copy.write_text(copy.read_text(encoding="utf-8").replace("peak learning rate", "learning rate"), encoding="utf-8")
    stale = run_script("--check", "--path", str(copy))
    assert stale.returncode == 1
    assert "is stale: run python -m scripts.config_reference" in stale.stderr
    assert len(stale.stderr.strip().splitlines()) == 1
