"""Dropout whose mask comes from uniform samples compared with p.

The same distribution as `nn.Dropout` (each entry kept with probability 1 - p and scaled by
1 / (1 - p)), but on CPU `torch.rand` and a comparison draw the mask faster than the
`bernoulli_` that `nn.Dropout` uses, and a training step draws four of them (see
docs/performance.md). The uniform samples are fp32 whatever the input's dtype, so p is not
rounded to bf16 under autocast.

With `whole_vectors=True` one draw covers the whole last dimension: word dropout, where a
token's entire embedding is zeroed (the rest scaled by 1 / (1 - p)), so the model must
translate with words missing from its input (Gal and Ghahramani, 2016; Sennrich and Zhang,
2019, found it among the most useful settings for small corpora).
"""

from __future__ import annotations

import torch
from torch import nn


class Dropout(nn.Module):
    def __init__(self, p: float, whole_vectors: bool = False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p
        self.whole_vectors = whole_vectors

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return x * 0.0
        shape = (*x.shape[:-1], 1) if self.whole_vectors else x.shape
        keep = torch.rand(shape, device=x.device) >= self.p  # (...) or (..., 1): True with probability 1 - p
        return x * keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}, whole_vectors=True" if self.whole_vectors else f"p={self.p}"
