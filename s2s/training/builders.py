"""The optimizer and the moving average of the weights, built from `optim.*` before training starts."""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel

from s2s.config import OptimConfig, Optimizer


def make_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Adam or AdamW over all parameters, fused into one kernel per update where torch has one."""
    kind = torch.optim.AdamW if cfg.name == Optimizer.adamw else torch.optim.Adam
    settings = dict(lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    try:  # one fused kernel per update instead of several per parameter tensor
        return kind(model.parameters(), fused=True, **settings)
    except (RuntimeError, TypeError):  # older torch builds without fused Adam for this device
        return kind(model.parameters(), **settings)


def make_ema(model: torch.nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of `model`'s weights (and buffers), or None when decay is 0."""
    if decay <= 0:
        return None
    return AveragedModel(model, multi_avg_fn=warmed_up_ema(decay), use_buffers=True)


def warmed_up_ema(decay: float):
    """The moving-average update for `AveragedModel`: avg <- d * avg + (1 - d) * weights with
    d = min(decay, (1 + n) / (10 + n)) after n updates, so that early averages are not dominated
    by the random initial weights (the warm-up of TensorFlow's ExponentialMovingAverage)."""

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        n = int(num_averaged)
        torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1.0 + n) / (10.0 + n)))

    return update
