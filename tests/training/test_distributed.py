"""Data-parallel training with torchrun on CPU (gloo), spawned as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from s2s import checkpoint
from tests.conftest import TINY

pytestmark = pytest.mark.slow

# No dropout: a 2-rank run and a 1-rank run with 2 accumulated batches then see exactly the same data.
# Two decoder layers: DDP refuses any parameter that gets no gradient, e.g. an upper layer's.
SETTINGS = [
    *TINY,
    "threads=1",
    "trainer.valid_every=4",
    "model.embedding_dropout=0",
    "model.encoder.dropout=0",
    "model.decoder.dropout=0",
    "model.decoder.num_layers=2",
]


def train(args: list[str], cwd: str, ranks: int = 1) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
        if ranks > 1
        else [sys.executable]
    )
    result = subprocess.run([*launcher, "-m", "s2s.train", *args], cwd=cwd, env=env, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    run_dir = next(a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir="))
    with open(os.path.join(run_dir, "metrics.json")) as file:
        return json.load(file)


def parameters(run_dir: str) -> dict[str, torch.Tensor]:
    return checkpoint.load(checkpoint.checkpoint_path(run_dir, "last"))["model"]


def validation_losses(run_dir: str) -> list[float]:
    with open(os.path.join(run_dir, "history.jsonl")) as file:
        return [row["loss"] for row in map(json.loads, file) if row["kind"] == "valid"]


def test_two_ranks_agree_learn_and_match_one_rank_with_doubled_batch(tmp_path):
    two = str(tmp_path / "two")
    summary = train([*SETTINGS, "trainer.max_steps=12", f"hydra.run.dir={two}"], str(tmp_path), ranks=2)
    assert summary["ranks"] == 2 and summary["steps"] == 12
    assert len(summary["rank_parameter_checksums"]) == 2 and len(set(summary["rank_parameter_checksums"])) == 1
    losses = validation_losses(two)
    assert losses[-1] < losses[0]
    assert not os.path.exists(tmp_path / "outputs")  # the other rank made no run directory of its own

    one = str(tmp_path / "one")
    train([*SETTINGS, "trainer.max_steps=12", "optim.accumulate=2", f"hydra.run.dir={one}"], str(tmp_path))
    expected, got = parameters(one), parameters(two)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_ranks_resume_from_the_same_checkpoint(tmp_path):
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    train([*SETTINGS, "trainer.max_steps=10", f"hydra.run.dir={straight}"], str(tmp_path), ranks=2)
    # stop at a validation step (valid_every=4): an extra end-of-run validation would step the LR schedule
    train([*SETTINGS, "trainer.max_steps=8", f"hydra.run.dir={resumed}"], str(tmp_path), ranks=2)
    summary = train(
        [*SETTINGS, "trainer.max_steps=10", "trainer.resume=auto", f"hydra.run.dir={resumed}"], str(tmp_path), ranks=2
    )
    assert len(set(summary["rank_parameter_checksums"])) == 1
    expected, got = parameters(straight), parameters(resumed)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)
