"""What a training checkpoint holds, and starting from one: resuming a run or fine-tuning from another.

A checkpoint is the whole training state (weights, moving average, optimizer, schedule, progress,
random number generators, config, vocabulary sizes, metrics), so a resumed run continues exactly
as if it had not stopped. After each validation the trainer writes `last.pt`, `best.pt` when the
metric improved, and with `trainer.keep_checkpoints` K also `step-N.pt` (weights only), keeping
the K newest. Files are written atomically (s2s.checkpoint.save_atomic).
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import asdict
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel

from s2s import checkpoint
from s2s.config import Config, TrainerConfig, config_as_dict
from s2s.errors import S2SError
from s2s.training.distributed import World
from s2s.training.progress import Progress
from s2s.training.schedule import LearningRateSchedule

log = logging.getLogger("s2s.train")


def resume_source(cfg: TrainerConfig, run_dir: str) -> str | None:
    """The checkpoint to continue from: trainer.resume=auto (this run dir) or a run dir / file."""
    if not cfg.resume:
        return None
    if cfg.resume == "auto":
        path = checkpoint.checkpoint_path(run_dir, "last")
        if not os.path.isfile(path):
            log.info("trainer.resume=auto: no checkpoint in %s yet, starting fresh", run_dir)
            return None
        return path
    return checkpoint.resolve_checkpoint(cfg.resume, "last")[1]


def fine_tune_source(cfg: TrainerConfig, resuming: bool) -> str | None:
    """The checkpoint whose weights a new run starts from (trainer.init_from), unless it resumes."""
    if not cfg.init_from or resuming:
        return None
    return checkpoint.resolve_checkpoint(cfg.init_from, "best")[1]


def load_compatible(
    path: str, purpose: str, cfg: Config, vocabulary: dict[str, int], device: torch.device
) -> dict[str, Any]:
    """Load a checkpoint whose model shape and vocabulary match this run, else refuse."""
    state = checkpoint.load(path, device)
    if "model" not in state or "config" not in state:
        raise S2SError(f"cannot {purpose} from {path}: it is not an s2s checkpoint")
    if state["config"].get("model") != config_as_dict(cfg)["model"]:
        raise S2SError(
            f"cannot {purpose} from {path}: its model config differs from this run's; use the same model.* settings"
        )
    if state.get("vocabulary", vocabulary) != vocabulary:
        raise S2SError(
            f"cannot {purpose} from {path}: its vocabulary {state['vocabulary']} differs from this run's {vocabulary}"
        )
    return state


def training_state(
    *,
    model: torch.nn.Module,
    ema: AveragedModel | None,
    optimizer: torch.optim.Optimizer,
    schedule: LearningRateSchedule,
    progress: Progress,
    cfg: Config,
    vocabulary: dict[str, int],
    metrics: dict[str, Any],
    best_metrics: dict[str, Any] | None,
) -> dict[str, Any]:
    """Everything a checkpoint holds. "model" is what translation and fine-tuning load: the moving
    average when there is one (the trained weights are then kept as "trained_model")."""
    rng: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    averaged = {"trained_model": model.state_dict(), "ema_updates": int(ema.n_averaged)} if ema is not None else {}
    return {
        "model": (ema.module if ema is not None else model).state_dict(),
        **averaged,
        "optimizer": optimizer.state_dict(),
        "scheduler": schedule.state_dict(),
        "progress": asdict(progress),
        "rng": rng,
        "config": config_as_dict(cfg),
        "vocabulary": vocabulary,
        "metrics": metrics,
        "best_metrics": best_metrics,
    }


def restore_training(
    state: dict[str, Any],
    model: torch.nn.Module,
    ema: AveragedModel | None,
    optimizer: torch.optim.Optimizer,
    schedule: LearningRateSchedule,
    world: World,
    seed: int,
) -> Progress:
    """Put a resumed run back where it stopped (weights, optimizer, schedule, RNGs); returns its progress."""
    model.load_state_dict(state.get("trained_model", state["model"]))
    if ema is not None:
        ema.module.load_state_dict(state["model"])
        ema.n_averaged.fill_(int(state.get("ema_updates", 0)))
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["scheduler"])
    progress = Progress(**state["progress"])
    random.setstate(_tuple_state(state["rng"]["python"]))
    torch.set_rng_state(state["rng"]["torch"].cpu())
    if torch.cuda.is_available() and "cuda" in state["rng"]:
        torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])
    if not world.is_main:  # the checkpoint holds rank 0's RNG; keep the ranks' dropout masks apart
        torch.manual_seed(seed + world.rank + 7919 * progress.step)
    return progress


def start_fine_tuning(
    state: dict[str, Any],
    cfg: TrainerConfig,
    model: torch.nn.Module,
    ema: AveragedModel | None,
    optimizer: torch.optim.Optimizer,
    schedule: LearningRateSchedule,
    progress: Progress,
) -> dict[str, Any] | None:
    """Start a new run from trained weights; optimizer, schedule and best score by the reset_* switches.

    Returns the best metrics carried over (None when trainer.reset_best)."""
    model.load_state_dict(state["model"])
    if ema is not None:
        ema.module.load_state_dict(state["model"])
    if not cfg.reset_optimizer:
        optimizer.load_state_dict(state["optimizer"])
    if not cfg.reset_scheduler:
        schedule.load_state_dict(state["scheduler"])
    if cfg.reset_best:
        return None
    progress.best_score = state["progress"]["best_score"]
    return state.get("best_metrics")


def save_validated(state: dict[str, Any], run_dir: str, improved: bool, keep: int, step: int) -> None:
    """last.pt, best.pt when the metric improved, and step-N.pt (weights only) with the `keep` newest kept."""
    checkpoint.save_atomic(state, checkpoint.checkpoint_path(run_dir, "last"))
    if improved:
        checkpoint.save_atomic(state, checkpoint.checkpoint_path(run_dir, "best"))
    if keep > 0:
        weights = {key: value for key, value in state.items() if key not in ("optimizer", "scheduler", "rng")}
        checkpoint.save_atomic(weights, checkpoint.step_checkpoint_path(run_dir, step))
        for old in checkpoint.step_checkpoints(run_dir)[:-keep]:
            os.remove(old)


def _tuple_state(state: Any) -> Any:
    """random.setstate wants tuples; a checkpoint may hand back lists."""
    return tuple(_tuple_state(s) for s in state) if isinstance(state, (list, tuple)) else state
