"""Kept checkpoints (trainer.keep_checkpoints) and their average (python -m s2s.average)."""

from __future__ import annotations

import os

import pytest
import torch

from s2s import checkpoint
from s2s.commands.average import AverageOptions, average
from s2s.commands.train import run
from s2s.errors import S2SError
from tests.conftest import TINY, make_config, run_cli


@pytest.fixture(scope="module")
def kept_run(tmp_path_factory) -> str:
    """12 updates, validated every 4 with a moving average, the last 2 validations' weights kept."""
    torch.set_num_threads(1)
    run_dir = str(tmp_path_factory.mktemp("kept") / "run")
    run(
        make_config(
            *TINY,
            "trainer.valid_every=4",
            "trainer.valid_each_epoch=false",
            "optim.ema_decay=0.9",
            "trainer.keep_checkpoints=2",
        ),
        run_dir,
    )
    return run_dir


@pytest.mark.slow
def test_the_last_validations_are_kept_without_optimizer_state(kept_run):
    kept = checkpoint.step_checkpoints(kept_run)
    assert [os.path.basename(path) for path in kept] == ["step-00000008.pt", "step-00000012.pt"]  # step 4 was dropped
    newest, last = checkpoint.load(kept[-1]), checkpoint.load(checkpoint.checkpoint_path(kept_run, "last"))
    assert "optimizer" not in newest and newest["progress"]["step"] == 12
    for key in ("model", "trained_model"):
        for name, tensor in last[key].items():
            assert torch.equal(newest[key][name], tensor), f"{key}.{name}"


def test_keep_checkpoints_must_not_be_negative(tmp_path):
    with pytest.raises(S2SError, match="trainer.keep_checkpoints must be 0"):
        run(make_config(*TINY, "trainer.keep_checkpoints=-1"), str(tmp_path / "run"))


@pytest.mark.slow
@pytest.mark.parametrize("weights, key", [("trained", "trained_model"), ("model", "model")])
def test_average_is_the_mean_of_the_kept_weights(kept_run, tmp_path, weights, key):
    output = average(AverageOptions(run=kept_run, last=5, weights=weights, output=str(tmp_path / "averaged.pt")))
    averaged = checkpoint.load(output)
    states = [checkpoint.load(path) for path in checkpoint.step_checkpoints(kept_run)]
    assert averaged["averaged_from"] == ["step-00000008.pt", "step-00000012.pt"]  # last=5, but only 2 were kept
    name = "decoder.output.weight"
    torch.testing.assert_close(averaged["model"][name], (states[0][key][name] + states[1][key][name]) / 2)
    assert not torch.equal(averaged["model"][name], states[1][key][name])
    assert "trained_model" not in averaged and averaged["config"] == states[1]["config"]


@pytest.mark.slow
def test_average_of_one_checkpoint_is_that_checkpoint(kept_run, tmp_path):
    output = average(AverageOptions(run=kept_run, last=1, output=str(tmp_path / "one.pt")))
    newest = checkpoint.load(checkpoint.step_checkpoints(kept_run)[-1])
    for name, tensor in checkpoint.load(output)["model"].items():
        assert torch.equal(tensor, newest["trained_model"][name]), name


@pytest.mark.slow
def test_averaged_and_kept_checkpoints_translate_by_name(kept_run):
    result = run_cli("s2s.average", ["--run", kept_run, "--last", "2"], cwd=kept_run)
    assert result.returncode == 0, result.stderr.decode()
    assert os.path.isfile(checkpoint.checkpoint_path(kept_run, "averaged"))
    lines = b"Dienstag, 9. November 1989\n\n3 de marzo de 1998\n"
    for name in ("averaged", "step-8"):
        translated = run_cli("s2s.translate", ["--run", kept_run, "--checkpoint", name], cwd=kept_run, stdin=lines)
        assert translated.returncode == 0, translated.stderr.decode()
        assert translated.stdout.decode().count("\n") == 3


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["last=0"], "last must be at least 1"),
        (["weights=ema"], "weights=ema must be trained or model"),
        (["search.beam_size=5"], "average takes no search options"),
    ],
)
def test_average_rejects_bad_options_in_one_line(kept_run, args, message):
    result = run_cli("s2s.average", [f"run={kept_run}", *args], cwd=kept_run)
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}")


@pytest.mark.slow
def test_average_without_kept_checkpoints_says_how_to_keep_them(tmp_path):
    run_dir = str(tmp_path / "run")
    os.makedirs(os.path.join(run_dir, "checkpoints"))
    result = run_cli("s2s.average", [f"run={run_dir}"], cwd=str(tmp_path))
    assert result.returncode == 2
    assert "trainer.keep_checkpoints=N" in result.stderr.decode()


@pytest.mark.slow
def test_unknown_checkpoint_names_are_refused(kept_run):
    result = run_cli("s2s.translate", ["--run", kept_run, "--checkpoint", "newest"], cwd=kept_run, stdin=b"x\n")
    assert result.returncode == 2
    assert "must be best, last, averaged or step-N" in result.stderr.decode()
    missing = run_cli("s2s.translate", ["--run", kept_run, "--checkpoint", "step-4"], cwd=kept_run, stdin=b"x\n")
    assert (
        missing.returncode == 2 and "step-00000004.pt" in missing.stderr.decode()
    )  # dropped: only the last 2 are kept


@pytest.mark.slow
def test_search_sweep_scores_averages_of_the_kept_checkpoints(kept_run):
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    result = subprocess.run(
        [sys.executable, "-m", "scripts.search_sweep", kept_run, "--beams", "1", "--average", "1,2,5"],
        capture_output=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    rows = json.loads(result.stdout.decode().splitlines()[-1])["rows"]
    assert sorted(row["weights"] for row in rows) == ["avg1", "avg2", "avg2", "best"]  # 5 asked, 2 kept
