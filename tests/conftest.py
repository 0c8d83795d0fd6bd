"""Shared fixtures: a tiny, fast training configuration and one trained run reused by CLI tests."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from s2s.config import Config, register_configs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONF_DIR = os.path.join(ROOT, "s2s", "conf")

# Small enough to train in seconds on 2 CPU cores, big enough to learn something.
TINY = [
    "data.generated_train_size=400",
    "data.generated_valid_size=16",
    "data.generated_test_size=24",
    "data.subword.vocab_size=80",
    "data.max_tokens=600",
    "model.embedding_size=16",
    "model.encoder.hidden_size=16",
    "model.decoder.hidden_size=32",
    "trainer.max_steps=12",
    "trainer.valid_every=6",
    "trainer.log_every=4",
    "threads=1",
]


def make_config(*overrides: str) -> Config:
    """The typed config that `python -m s2s.train OVERRIDES...` would run with."""
    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        composed = compose("config", overrides=list(overrides))
    return OmegaConf.to_object(composed)


def run_cli(
    module: str, args: list[str], cwd: str, stdin: bytes | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """Run `python -m <module> args...` in a subprocess; returns the completed process (bytes)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, input=stdin, capture_output=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> str:
    """A run trained by the real CLI (with Hydra's default output directory under outputs/)."""
    workdir = tmp_path_factory.mktemp("work")
    result = run_cli("s2s.train", TINY, cwd=str(workdir))
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    runs = [os.path.join(dirpath) for dirpath, dirnames, _ in os.walk(workdir / "outputs") if "checkpoints" in dirnames]
    assert len(runs) == 1
    return runs[0]
