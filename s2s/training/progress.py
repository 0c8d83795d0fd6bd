"""Where a training run stands (saved in every checkpoint) and what one update did."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint so a resumed run continues exactly."""

    step: int = 0  # optimizer updates done
    epoch: int = 0  # current epoch (0-based)
    position: int = 0  # updates of the current epoch already done
    best_score: float | None = None  # best value of the early-stopping metric
    best_step: int = 0
    stale_validations: int = 0  # validations since the metric last improved
    train_seconds: float = 0.0  # time spent in training steps, summed over resumptions
    wall_seconds: float = 0.0  # wall-clock time of the run (data preparation excluded), summed over resumptions
    validated_at: int = -1  # step of the latest validation (a resumed run must not repeat it)
    skipped_steps: int = 0  # updates skipped for a non-finite loss or gradient
    bad_in_a_row: int = 0  # consecutive skipped updates


class UpdateStats(NamedTuple):
    """One optimizer update, as the log reports it."""

    loss: float  # mean token loss on this rank
    tokens: int  # target tokens of the update, all ranks
    seconds: float
    grad_norm: float  # global gradient norm before clipping
    clipped: bool  # optim.clip_norm scaled the gradient down
