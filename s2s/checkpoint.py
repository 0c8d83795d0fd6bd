"""Checkpoints and run directories: atomic saves, safe loads, finding the most recent run.

A run directory (made by `python -m s2s.train`) holds:
    config.yaml            the composed config (also in .hydra/ with the overrides)
    spm.model              the sentencepiece model (or spm.src.model + spm.tgt.model)
    checkpoints/last.pt    the latest state: model, optimizer, scheduler, step, RNG, data position
    checkpoints/best.pt    the state with the best validation metric
    checkpoints/step-N.pt  the weights at validation N (`trainer.keep_checkpoints`; no optimizer state)
    train.log              the training log
    metrics.json           the final summary
"""

from __future__ import annotations

import glob
import os
import re
import tempfile
from typing import Any

import torch

from s2s.errors import S2SError

CHECKPOINT_DIR = "checkpoints"


def save_atomic(state: dict[str, Any], path: str, what: str = "checkpoint") -> None:
    """Write to a temporary file in the same directory, fsync, then rename over `path`.

    A crash at any moment leaves either the old file or the new one, never half of one.
    """
    directory = os.path.dirname(os.path.abspath(path))
    temporary = None
    try:
        os.makedirs(directory, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".pt")
        with os.fdopen(handle, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        if temporary is not None and os.path.exists(temporary):
            os.remove(temporary)
        raise S2SError(f"cannot write {what} {path}: {error.strerror or error}") from None


def load(path: str, device: torch.device | str = "cpu", what: str = "checkpoint") -> dict[str, Any]:
    """Load a checkpoint (or model file) without executing code from it (weights_only=True)."""
    if not os.path.isfile(path):
        raise S2SError(f"{what} {path} does not exist")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # truncated, corrupted, or not a checkpoint at all
        raise S2SError(
            f"cannot read {what} {path}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        ) from None
    if not isinstance(state, dict):
        raise S2SError(f"{path} is not an s2s {what}: it holds a {type(state).__name__}, not a dict")
    return state


def checkpoint_path(run_dir: str, which: str = "last") -> str:
    return os.path.join(run_dir, CHECKPOINT_DIR, f"{which}.pt")


STEP_NAME = re.compile(r"step-(\d+)")  # a kept checkpoint, named by its update with or without zero padding


def check_name(which: str) -> None:
    """A run's checkpoints are best, last, averaged (python -m s2s.average) and step-N (trainer.keep_checkpoints)."""
    if which not in ("best", "last", "averaged") and not STEP_NAME.fullmatch(which):
        raise S2SError(f"checkpoint={which} must be best, last, averaged or step-N (or give run=FILE.pt)")


def named_checkpoint_path(run_dir: str, which: str) -> str:
    """checkpoints/WHICH.pt of a run, for a name that `check_name` accepts."""
    check_name(which)
    step = STEP_NAME.fullmatch(which)
    return step_checkpoint_path(run_dir, int(step.group(1))) if step else checkpoint_path(run_dir, which)


def step_checkpoint_path(run_dir: str, step: int) -> str:
    return checkpoint_path(run_dir, f"step-{step:08d}")


def step_checkpoints(run_dir: str) -> list[str]:
    """The run's kept step-N.pt checkpoints, oldest first."""
    return sorted(glob.glob(os.path.join(run_dir, CHECKPOINT_DIR, "step-*.pt")))


def resolve_checkpoint(run: str | None, which: str = "best", search_root: str = "outputs") -> tuple[str, str]:
    """Find (run directory, checkpoint file) from `run=` (a run directory or a .pt file).

    With no run, take the most recently trained run under `search_root`.
    """
    if run is None:
        run = latest_run(search_root)
    if os.path.isfile(run):
        run_dir = os.path.dirname(os.path.dirname(os.path.abspath(run)))
        return run_dir, run
    if not os.path.isdir(run):
        raise S2SError(f"{run} is neither a run directory, a checkpoint file nor a model file")
    path = named_checkpoint_path(run, which)
    if not os.path.isfile(path) and which == "best":
        path = checkpoint_path(run, "last")
    if not os.path.isfile(path):
        raise S2SError(f"no checkpoint in {run} (expected {path}); has training saved one yet?")
    return run, path


def latest_run(search_root: str = "outputs") -> str:
    """The run directory under `search_root` whose last checkpoint was written most recently."""
    found = glob.glob(os.path.join(search_root, "**", CHECKPOINT_DIR, "last.pt"), recursive=True)
    if not found:
        raise S2SError(f"no trained run found under {os.path.abspath(search_root)}; train one or pass run=PATH")
    newest = max(found, key=os.path.getmtime)
    return os.path.dirname(os.path.dirname(newest))
