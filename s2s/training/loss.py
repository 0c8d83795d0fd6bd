"""Label-smoothed cross-entropy, summed over non-padding tokens, with a hand-written gradient.

For logits z (N, V), gold tokens y and smoothing e, each kept row costs

    (1 - e) * (lse(z) - z_y) + e * (lse(z) - mean(z))      lse = log-sum-exp over V

which is `F.cross_entropy(z, y, ignore_index=PAD, label_smoothing=e, reduction="sum")`, and
its gradient is softmax(z) - (1 - e) * onehot(y) - e / V per kept row, zero for padding.

The (N, V) logits are the largest tensor of a training step (about 7 million entries for
900 target tokens and V = 8,000), so the cost here is memory traffic, not arithmetic.
Autograd's route (log_softmax, its backward, a zero-filled NLL gradient, their sum) makes
several passes over N x V tensors in memory, and under bf16 autocast two more to convert
between bf16 and fp32. Here both directions work through the rows in chunks small enough
to stay in the CPU's cache, in fp32 whatever the logits' dtype, with torch's fused
log_softmax / softmax kernels: the forward reads the logits once and keeps nothing but
them; the backward reads them once more and writes the gradient once, in the logits'
dtype. Under bf16 autocast this is 2-4x faster than the whole-tensor version (forward +
backward, 2 threads: 12.8 ms against 46.4 for 1,960 x 8,000 logits, 8.3 against 15.9 for
2,000 x 5,000); in fp32 the two are even.

Shapes: N tokens, V vocabulary, R rows per chunk.
"""

from __future__ import annotations

import torch

CHUNK_ENTRIES = 1 << 19  # fp32 entries per chunk (2 MiB): R = CHUNK_ENTRIES // V rows, 65 for V = 8,000


def smoothed_cross_entropy(
    logits: torch.Tensor, gold: torch.Tensor, smoothing: float, ignore_index: int
) -> torch.Tensor:
    """logits (N, V) in any float dtype, gold (N,) -> the summed loss over rows with gold != ignore_index (fp32 scalar)."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
    return _SmoothedCrossEntropy.apply(logits, gold, smoothing, ignore_index)


def _row_chunks(rows: int, vocab: int) -> list[slice]:
    step = max(1, CHUNK_ENTRIES // max(vocab, 1))
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)]


class _SmoothedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, gold: torch.Tensor, smoothing: float, ignore_index: int) -> torch.Tensor:
        logits = logits.contiguous()
        keep = gold != ignore_index  # (N,)
        safe_gold = gold.masked_fill(~keep, 0)  # (N,) any valid index on padding rows, which are masked out
        row_loss = torch.empty(logits.size(0), dtype=torch.float32, device=logits.device)  # (N,)
        for rows in _row_chunks(*logits.shape):
            log_probs = torch.log_softmax(logits[rows], dim=-1, dtype=torch.float32)  # (R, V)
            loss = -(1.0 - smoothing) * log_probs.gather(1, safe_gold[rows].unsqueeze(1)).squeeze(1)  # (R,)
            if smoothing > 0.0:
                loss -= smoothing * log_probs.mean(dim=-1)  # uniform part: -mean log p
            row_loss[rows] = loss
        ctx.save_for_backward(logits, safe_gold, keep)
        ctx.smoothing = smoothing
        return row_loss.masked_fill(~keep, 0.0).sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, gold, keep = ctx.saved_tensors
        smoothing, vocab = ctx.smoothing, logits.size(1)
        scale = (grad * keep.to(torch.float32)).unsqueeze(1)  # (N, 1) upstream gradient, zero on padding
        gold_term = -(1.0 - smoothing) * scale  # (N, 1) added at each row's gold token
        grad_logits = torch.empty_like(logits)  # (N, V) in the logits' dtype
        for rows in _row_chunks(*logits.shape):
            chunk = torch.softmax(logits[rows], dim=-1, dtype=torch.float32)  # (R, V)
            if smoothing > 0.0:
                chunk.sub_(smoothing / vocab)
            chunk.mul_(scale[rows])
            chunk.scatter_add_(1, gold[rows].unsqueeze(1), gold_term[rows])
            grad_logits[rows] = chunk
        return grad_logits, None, None, None


def symmetric_kl(first: torch.Tensor, second: torch.Tensor, gold: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """KL(p || q) + KL(q || p) between the softmaxes of two logits (N, V) of the same tokens, summed
    over rows with gold != ignore_index (fp32 scalar): sum over V of (p - q)(log p - log q).

    R-Drop's consistency term (Liang et al., 2021): the same batch twice through dropout should give
    the same predictions. Autograd differentiates it; it is small beside the model's own cost.
    """
    keep = (gold != ignore_index).unsqueeze(1)  # (N, 1)
    log_p = torch.log_softmax(first.float(), dim=-1)  # (N, V)
    log_q = torch.log_softmax(second.float(), dim=-1)
    row = ((log_p.exp() - log_q.exp()) * (log_p - log_q)).masked_fill(~keep, 0.0)  # (N, V)
    return row.sum()
