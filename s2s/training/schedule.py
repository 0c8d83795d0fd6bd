"""Learning rate as a function of training progress: linear warm-up, then an optional linear decay.

The decay is measured in *budget fraction*: how much of the run's budget is used, where the
budget is trainer.max_steps, trainer.max_epochs or trainer.max_minutes (whichever ends the
run first). A run with a wall-clock budget therefore anneals to `min_lr` exactly when its
time is up, on any machine. The plateau schedule (halving on a stalled validation metric)
is torch's ReduceLROnPlateau, stepped by the trainer at validation.
"""

from __future__ import annotations


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
