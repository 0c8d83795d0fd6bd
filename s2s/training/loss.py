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
dtype. Under bf16 autocast this is several times faster than the whole-tensor version, and
in fp32 no slower (figures in docs/performance.md).

Shapes: N tokens, V vocabulary, R rows per chunk.
"""

from __future__ import annotations

import torch

from s2s.data.batching import Batch
from s2s.special_tokens import PAD

CHUNK_ENTRIES = 1 << 19  # fp32 entries per chunk (2 MiB): R = CHUNK_ENTRIES // V rows, 65 for V = 8,000


def smoothed_cross_entropy(
    logits: torch.Tensor, gold: torch.Tensor, smoothing: float, ignore_index: int
) -> torch.Tensor:
    """logits (N, V) in any float dtype, gold (N,) -> the loss summed over rows with gold != ignore_index (fp32)."""
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


def token_loss(logits: torch.Tensor, gold: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Summed cross-entropy over non-padding tokens: logits (B, T, V), gold (B, T) -> fp32 scalar."""
    return smoothed_cross_entropy(logits.flatten(0, 1), gold.flatten(), label_smoothing, PAD)


def rdrop_inputs(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """R-Drop's input: src, src_lengths and tgt_in with every sentence twice, (2B, ...), first copies first."""
    return tuple(torch.cat([t, t]) for t in (batch.src, batch.src_lengths, batch.tgt_in))  # type: ignore[return-value]


def rdrop_loss(
    logits: torch.Tensor, gold: torch.Tensor, label_smoothing: float, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (2B, T, V) of a batch run twice (`rdrop_inputs`), gold (B, T) -> (loss, cross-entropy), fp32 sums.

    R-Drop's per-pair loss (Liang et al., 2021), CE_1 + CE_2 + alpha/2 (KL(p||q) + KL(q||p)), halved so
    that it is on one copy's scale (the learning rate and the logged loss mean what they mean without it).
    """
    cross_entropy = token_loss(logits, torch.cat([gold, gold]), label_smoothing) / 2  # both copies in one pass
    first, second = logits.flatten(0, 1).chunk(2)  # (B*T, V) each
    consistency = symmetric_kl(first, second, gold.flatten(), PAD)
    return cross_entropy + alpha / 4 * consistency, cross_entropy
