"""Label-smoothed cross-entropy, summed over non-padding tokens, with a hand-written gradient.

For logits z (N, V), gold tokens y and smoothing e, each kept row costs

    (1 - e) * (lse(z) - z_y) + e * (lse(z) - mean(z))      lse = log-sum-exp over V

which is `F.cross_entropy(z, y, ignore_index=PAD, label_smoothing=e, reduction="sum")`, and
its gradient is softmax(z) - (1 - e) * onehot(y) - e / V per kept row, zero for padding.
Autograd reaches the same gradient through log_softmax's backward, a zero-filled N x V
tensor for the NLL term and an N x V sum of the two terms: several passes over the largest
tensor of a training step (about 7 million entries for 900 target tokens and V = 8,000).
Here the forward keeps log-probabilities and the backward makes the gradient from them in
place: about half the memory traffic (scripts/profile_step.py shows the difference).

Shapes: N tokens, V vocabulary.
"""

from __future__ import annotations

import torch


def smoothed_cross_entropy(logits: torch.Tensor, gold: torch.Tensor, smoothing: float, ignore_index: int) -> torch.Tensor:
    """logits (N, V) in any float dtype, gold (N,) -> the summed loss over rows with gold != ignore_index (fp32 scalar)."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
    return _SmoothedCrossEntropy.apply(logits, gold, smoothing, ignore_index)


class _SmoothedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, gold: torch.Tensor, smoothing: float, ignore_index: int) -> torch.Tensor:
        log_probs = torch.log_softmax(logits, dim=-1, dtype=torch.float32)  # (N, V), fp32 whatever the logits' dtype
        keep = gold != ignore_index  # (N,)
        safe_gold = gold.masked_fill(~keep, 0)  # (N,) any valid index on padding rows, which are masked out
        nll = -log_probs.gather(1, safe_gold.unsqueeze(1)).squeeze(1)  # (N,)
        row_loss = (1.0 - smoothing) * nll
        if smoothing > 0.0:
            row_loss = row_loss - smoothing * log_probs.mean(dim=-1)  # (N,) uniform part: -mean log p
        ctx.save_for_backward(log_probs, safe_gold, keep)
        ctx.smoothing, ctx.logits_dtype = smoothing, logits.dtype
        return row_loss.masked_fill(~keep, 0.0).sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        log_probs, gold, keep = ctx.saved_tensors
        smoothing = ctx.smoothing
        scale = grad * keep.to(log_probs.dtype)  # (N,) upstream gradient, zero on padding
        grad_logits = log_probs.exp_()  # (N, V) softmax, in place: log_probs is not needed again
        if smoothing > 0.0:
            grad_logits.sub_(smoothing / log_probs.size(1))
        grad_logits.mul_(scale.unsqueeze(1))
        grad_logits.scatter_add_(1, gold.unsqueeze(1), (-(1.0 - smoothing) * scale).unsqueeze(1))
        return grad_logits.to(ctx.logits_dtype), None, None, None
