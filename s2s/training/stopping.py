"""When training stops: the budget (updates, epochs, minutes) and early stopping on the validation metric."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import torch

from s2s.config import TrainerConfig
from s2s.metrics import HIGHER_IS_BETTER
from s2s.training import distributed
from s2s.training.progress import Progress
from s2s.training.schedule import budget_fraction

log = logging.getLogger("s2s.train")


class Budget:
    """trainer.max_steps, max_epochs and max_minutes; the wall clock is added up in progress.wall_seconds.

    Time spent preparing data is not counted: `start()` restarts the clock when the loop begins.
    With a time budget the ranks agree on the elapsed time (their mean), so all stop together.
    """

    def __init__(self, cfg: TrainerConfig, world_size: int):
        self.cfg, self.world_size = cfg, world_size
        self.clock = time.perf_counter()
        self.elapsed_seconds = 0.0  # wall seconds as all ranks agree on them, updated once per update by spent()

    def start(self) -> None:
        self.clock = time.perf_counter()

    def tick(self, progress: Progress) -> None:
        """Add the wall time since the last tick to the run's total."""
        now = time.perf_counter()
        progress.wall_seconds += now - self.clock
        self.clock = now

    def spent(self, progress: Progress) -> bool:
        cfg = self.cfg
        self.tick(progress)
        if cfg.max_minutes > 0:  # the ranks' clocks differ slightly: all use their mean (one collective per update)
            wall = torch.tensor([progress.wall_seconds], dtype=torch.float64)
            self.elapsed_seconds = float(distributed.sum_over_ranks(wall)[0]) / self.world_size
        out_of_time = cfg.max_minutes > 0 and self.elapsed_seconds >= 60 * cfg.max_minutes
        out_of_steps = cfg.max_steps > 0 and progress.step >= cfg.max_steps
        out_of_epochs = cfg.max_epochs > 0 and progress.epoch >= cfg.max_epochs
        return out_of_steps or out_of_epochs or out_of_time

    def used_fraction(self, progress: Progress, updates_per_epoch: int) -> float:
        """How much of the budget is used, in [0, 1] (what optim.scheduler=linear decays over)."""
        epoch_steps = updates_per_epoch * self.cfg.max_epochs if self.cfg.max_epochs > 0 else 0
        return budget_fraction(
            progress.step, self.elapsed_seconds, self.cfg.max_steps, epoch_steps, self.cfg.max_minutes
        )


def record_validation(progress: Progress, metrics: dict[str, Any], metric: str) -> bool:
    """Note a validation's score in `progress`; True when `metric` improved on the best so far.

    A NaN score or loss never counts as an improvement, so a diverged model is never the best.
    """
    progress.validated_at = progress.step
    value = float(metrics[metric])
    best = progress.best_score
    better = best is None or (value > best if HIGHER_IS_BETTER[metric] else value < best)
    improved = better and math.isfinite(value) and math.isfinite(float(metrics["loss"]))
    if improved:
        progress.best_score, progress.best_step, progress.stale_validations = value, progress.step, 0
    else:
        progress.stale_validations += 1
    return improved


def patience_ran_out(progress: Progress, cfg: TrainerConfig) -> bool:
    """Early stopping: the metric has not improved for trainer.early_stopping_patience validations."""
    patience = cfg.early_stopping_patience
    if patience > 0 and progress.stale_validations >= patience:
        log.info("early stopping: %s has not improved for %d validations", cfg.early_stopping_metric, patience)
        return True
    return False
