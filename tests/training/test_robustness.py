"""Training never loses work: signals, SIGKILL at any moment, non-finite steps, fine-tuning."""

from __future__ import annotations

import filecmp
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from s2s import checkpoint
from s2s.commands.train import run
from s2s.errors import S2SError
from tests.conftest import TINY, make_config

pytestmark = pytest.mark.slow

DETERMINISTIC = [*TINY, "threads=1", "model.embedding_dropout=0.2", "model.decoder.dropout=0.2"]


def start_training(args: list[str], cwd: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "s2s.train", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def wait_for_checkpoint(path: str, process: subprocess.Popen, newer_than: float = 0.0, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.isfile(path) and os.path.getmtime(path) > newer_than:
            return
        if process.poll() is not None:
            raise AssertionError(f"training ended before writing {path}: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint {path} after {timeout} s")


def assert_same_parameters(run_a: str, run_b: str) -> None:
    a = checkpoint.load(checkpoint.checkpoint_path(run_a, "last"))
    b = checkpoint.load(checkpoint.checkpoint_path(run_b, "last"))
    assert a["progress"]["step"] == b["progress"]["step"]
    for name in a["model"]:
        torch.testing.assert_close(b["model"][name], a["model"][name], rtol=0, atol=0, msg=name)


def test_sigkill_at_several_points_then_resume_matches_uninterrupted(tmp_path):
    settings = [*DETERMINISTIC, "trainer.max_steps=40", "trainer.valid_every=3"]
    straight = str(tmp_path / "straight")
    run(make_config(*settings), straight)

    killed = str(tmp_path / "killed")
    last = checkpoint.checkpoint_path(killed, "last")
    args = [*settings, f"hydra.run.dir={killed}", "trainer.resume=auto"]
    for delay in (0.0, 0.15, 0.4):
        before = os.path.getmtime(last) if os.path.isfile(last) else 0.0
        process = start_training(args, str(tmp_path))
        wait_for_checkpoint(last, process, newer_than=before)
        time.sleep(delay)
        process.kill()  # SIGKILL: no handler runs
        process.wait()
        checkpoint.load(last)  # whatever moment it died, the last checkpoint is whole
    finish = start_training(args, str(tmp_path))
    _, err = finish.communicate(timeout=300)
    assert finish.returncode == 0, err.decode()[-2000:]
    assert_same_parameters(straight, killed)


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_a_checkpoint_and_says_how_to_resume(tmp_path, signal_number):
    run_dir = str(tmp_path / "run")
    process = start_training(
        [*DETERMINISTIC, "trainer.max_steps=100000", "trainer.valid_every=5", f"hydra.run.dir={run_dir}"], str(tmp_path)
    )
    wait_for_checkpoint(checkpoint.checkpoint_path(run_dir, "last"), process)
    time.sleep(0.3)
    process.send_signal(signal_number)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal_number
    message = err.decode().strip().splitlines()[-1]
    assert "trainer.resume=auto" in message and run_dir in message
    assert "Traceback" not in err.decode()
    state = checkpoint.load(checkpoint.checkpoint_path(run_dir, "last"))
    assert state["progress"]["step"] > 0


def test_non_finite_steps_are_skipped_and_counted(tmp_path, monkeypatch):
    import s2s.training.trainer as train_module

    original = train_module.token_loss
    calls = {"n": 0}

    def sometimes_nan(logits, gold, smoothing):
        loss = original(logits, gold, smoothing)
        if torch.is_grad_enabled():  # training steps only
            calls["n"] += 1
            if calls["n"] in (3, 4, 5):
                return loss * float("nan")
        return loss

    monkeypatch.setattr(train_module, "token_loss", sometimes_nan)
    summary = run(make_config(*DETERMINISTIC, "trainer.max_steps=10", "trainer.valid_every=5"), str(tmp_path / "run"))
    assert summary["skipped_steps"] == 3 and summary["steps"] == 10
    best = checkpoint.load(checkpoint.checkpoint_path(str(tmp_path / "run"), "best"))
    assert all(torch.isfinite(p).all() for p in best["model"].values())
    assert math.isfinite(best["metrics"]["loss"])


def test_diverging_run_stops_with_a_clear_error(tmp_path, monkeypatch):
    import s2s.training.trainer as train_module

    original = train_module.token_loss
    monkeypatch.setattr(
        train_module,
        "token_loss",
        lambda logits, gold, smoothing: (
            original(logits, gold, smoothing) * (float("inf") if torch.is_grad_enabled() else 1.0)
        ),
    )
    with pytest.raises(S2SError, match="4 non-finite losses or gradients in a row"):
        run(make_config(*DETERMINISTIC, "trainer.max_bad_steps=4"), str(tmp_path / "run"))


def test_fine_tuning_starts_from_trained_weights_with_its_vocabulary(tmp_path):
    base = str(tmp_path / "base")
    run(make_config(*DETERMINISTIC, "trainer.max_steps=6", "trainer.valid_every=3"), base)
    tuned = str(tmp_path / "tuned")
    config = make_config(
        *DETERMINISTIC,
        "trainer.max_steps=1",
        "trainer.valid_every=1",
        f"trainer.init_from={base}",
        "trainer.reset_optimizer=false",
        "seed=7",
    )
    summary = run(config, tuned)
    assert summary["steps"] == 1  # a new run: its own step count
    assert filecmp.cmp(os.path.join(base, "spm.model"), os.path.join(tuned, "spm.model"), shallow=False)
    state = checkpoint.load(checkpoint.checkpoint_path(tuned, "last"))
    adam_steps = {float(s["step"]) for s in state["optimizer"]["state"].values()}
    base_best_step = checkpoint.load(checkpoint.checkpoint_path(base, "best"))["progress"]["step"]
    assert adam_steps == {base_best_step + 1.0}  # init_from takes the best checkpoint; its optimizer state was kept


def test_fine_tuning_refuses_another_model_shape(tmp_path):
    base = str(tmp_path / "base")
    run(make_config(*DETERMINISTIC, "trainer.max_steps=2", "trainer.valid_every=2"), base)
    with pytest.raises(S2SError, match="model config differs"):
        run(
            make_config(*DETERMINISTIC, "model.decoder.hidden_size=24", f"trainer.init_from={base}"),
            str(tmp_path / "other"),
        )


def test_learning_curve_history_and_tensorboard_are_written(tmp_path):
    run_dir = str(tmp_path / "run")
    run(make_config(*DETERMINISTIC, "trainer.max_steps=8", "trainer.valid_every=4", "trainer.log_every=2"), run_dir)
    with open(os.path.join(run_dir, "learning_curve.png"), "rb") as file:
        assert file.read(8) == b"\x89PNG\r\n\x1a\n"
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(os.path.join(run_dir, "tensorboard")))
    with open(os.path.join(run_dir, "history.jsonl")) as file:
        kinds = [line.split('"kind": "')[1].split('"')[0] for line in file]
    assert kinds.count("valid") == 2 and kinds.count("train") == 4
