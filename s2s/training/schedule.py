"""Learning rate as a function of training progress: linear warm-up, then an optional linear decay.

The decay is measured in *budget fraction*: how much of the run's budget is used, where the
budget is trainer.max_steps, trainer.max_epochs or trainer.max_minutes (whichever ends the
run first). A run with a wall-clock budget therefore anneals to `min_lr` exactly when its
time is up, on any machine. The plateau schedule (scaling down on a stalled validation
metric) is torch's ReduceLROnPlateau, stepped at validation. `LearningRateSchedule` puts the
three together for the trainer.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from s2s.config import OptimConfig, Scheduler


def warmup_factor(step: int, warmup_steps: int) -> float | None:
    """lr multiplier during warm-up (step counts completed updates), None once it is over."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    return None


def linear_decay_lr(peak: float, floor: float, budget_fraction: float, decay_start: float) -> float:
    """peak until `decay_start` of the budget, then a straight line to `floor` at its end.

    budget_fraction and decay_start are in [0, 1]; fractions past the end give `floor`.
    """
    if budget_fraction <= decay_start:
        return peak
    remaining = max(0.0, 1.0 - budget_fraction) / (1.0 - decay_start)  # 1 at decay_start, 0 at the end
    return floor + (peak - floor) * remaining


def budget_fraction(
    step: int, wall_seconds: float, max_steps: int, total_epoch_steps: int, max_minutes: float
) -> float:
    """The largest used fraction among the set budgets (0 disables one), capped at 1."""
    fractions = [0.0]
    if max_steps > 0:
        fractions.append(step / max_steps)
    if total_epoch_steps > 0:
        fractions.append(step / total_epoch_steps)
    if max_minutes > 0:
        fractions.append(wall_seconds / (60.0 * max_minutes))
    return min(1.0, max(fractions))


class LearningRateSchedule:
    """The run's learning rate: warm-up, then `optim.scheduler`.

    `linear` sets the rate before every update from the budget fraction; `plateau` leaves it
    alone between validations and lets torch's ReduceLROnPlateau scale it down when the
    validation metric stalls. The plateau state is kept (and checkpointed) with either
    scheduler, so the checkpoint layout does not depend on the choice.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: OptimConfig, higher_is_better: bool):
        self.optimizer, self.cfg = optimizer, cfg
        self.on_plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="max" if higher_is_better else "min",
            factor=cfg.plateau_factor,
            patience=cfg.plateau_patience,
            min_lr=cfg.min_lr,
        )

    def before_update(self, step: int, used_budget: Callable[[], float]) -> None:
        """Set the rate for update `step` (0-based); `used_budget()` is the budget fraction spent."""
        cfg = self.cfg
        factor = warmup_factor(step, cfg.warmup_steps)
        if factor is not None:
            lr = cfg.lr * factor
        elif cfg.scheduler == Scheduler.linear:
            lr = linear_decay_lr(cfg.lr, cfg.min_lr, used_budget(), cfg.decay_start)
        else:
            return
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def after_validation(self, step: int, value: float) -> None:
        """The plateau schedule sees each finite validation score once warm-up is over."""
        if self.cfg.scheduler == Scheduler.plateau and step >= self.cfg.warmup_steps and math.isfinite(value):
            self.on_plateau.step(value)

    def state_dict(self) -> dict[str, Any]:
        return self.on_plateau.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.on_plateau.load_state_dict(state)
