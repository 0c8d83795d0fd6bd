"""Which torch device a command runs on."""

from __future__ import annotations

import torch

from s2s.errors import S2SError


def pick_device(name: str) -> torch.device:
    """`auto` is CUDA when available, else CPU; otherwise the named device, checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise S2SError(f"device={name} is not a device name (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise S2SError(f"device={name} was asked for but CUDA is not available; use device=cpu")
    return device
