"""Losses (s2s.training.loss): the hand-written label-smoothed cross-entropy matches torch's, value and gradient;
R-Drop's loss is the mean cross-entropy plus the weighted symmetric KL."""

import pytest
import torch
import torch.nn.functional as F

import s2s.training.loss as loss_module
from s2s.training.loss import rdrop_loss, smoothed_cross_entropy, symmetric_kl, token_loss

PAD = 0


def _logits_and_gold(
    rows: int = 37, vocab: int = 53, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(rows, vocab, generator=generator)).to(dtype)
    gold = torch.randint(1, vocab, (rows,), generator=generator)
    gold[::5] = PAD  # every fifth row is padding
    return logits, gold


def _loss_and_grad(loss_fn, logits: torch.Tensor, upstream: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    logits = logits.clone().requires_grad_()
    loss = loss_fn(logits)
    (loss * upstream).backward()
    return loss.detach(), logits.grad


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_matches_torch_cross_entropy_in_value_and_gradient(smoothing):
    logits, gold = _logits_and_gold()
    expected, expected_grad = _loss_and_grad(
        lambda z: F.cross_entropy(z, gold, ignore_index=PAD, label_smoothing=smoothing, reduction="sum"),
        logits,
        upstream=0.37,
    )
    loss, grad = _loss_and_grad(lambda z: smoothed_cross_entropy(z, gold, smoothing, PAD), logits, upstream=0.37)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grad, expected_grad)


@pytest.mark.parametrize("rows_per_chunk", [1, 4, 36, 37])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_row_chunks_give_the_same_loss_and_gradient_as_one_chunk(monkeypatch, rows_per_chunk, dtype):
    logits, gold = _logits_and_gold(dtype=dtype)  # 37 rows of 53
    whole, whole_grad = _loss_and_grad(lambda z: smoothed_cross_entropy(z, gold, 0.1, PAD), logits, upstream=0.37)
    monkeypatch.setattr(loss_module, "CHUNK_ENTRIES", 53 * rows_per_chunk)
    chunked, chunked_grad = _loss_and_grad(lambda z: smoothed_cross_entropy(z, gold, 0.1, PAD), logits, upstream=0.37)
    assert chunked_grad.dtype == dtype
    torch.testing.assert_close(chunked, whole)
    torch.testing.assert_close(chunked_grad, whole_grad)


def test_logits_from_a_transposed_view_are_handled():
    logits, gold = _logits_and_gold()
    transposed = logits.t().contiguous().t()  # same values, column-major strides (kept by _loss_and_grad's clone)
    assert not transposed.is_contiguous()
    loss, grad = _loss_and_grad(lambda z: smoothed_cross_entropy(z, gold, 0.1, PAD), logits)
    loss_t, grad_t = _loss_and_grad(lambda z: smoothed_cross_entropy(z, gold, 0.1, PAD), transposed)
    torch.testing.assert_close(loss_t, loss)
    torch.testing.assert_close(grad_t, grad)


def test_bf16_logits_give_fp32_loss_and_bf16_gradient_close_to_fp32():
    logits, gold = _logits_and_gold(dtype=torch.bfloat16)
    expected, expected_grad = _loss_and_grad(
        lambda z: F.cross_entropy(z.float(), gold, ignore_index=PAD, label_smoothing=0.1, reduction="sum"), logits
    )
    loss, grad = _loss_and_grad(lambda z: smoothed_cross_entropy(z, gold, 0.1, PAD), logits)
    assert loss.dtype == torch.float32 and grad.dtype == torch.bfloat16
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grad.float(), expected_grad.float(), atol=1e-2, rtol=1e-2)


def test_padding_rows_add_nothing_and_get_zero_gradient():
    logits, gold = _logits_and_gold()
    kept = gold != PAD
    loss, grad = _loss_and_grad(lambda z: smoothed_cross_entropy(z, gold, 0.1, PAD), logits)
    kept_only, _ = _loss_and_grad(lambda z: smoothed_cross_entropy(z, gold[kept], 0.1, PAD), logits[kept])
    torch.testing.assert_close(loss, kept_only)
    assert torch.all(grad[~kept] == 0) and torch.all(grad[kept].abs().sum(dim=1) > 0)


def test_all_padding_is_zero_loss():
    logits, _ = _logits_and_gold(rows=4)
    loss, grad = _loss_and_grad(lambda z: smoothed_cross_entropy(z, torch.zeros(4, dtype=torch.long), 0.1, PAD), logits)
    assert loss.item() == 0.0 and torch.all(grad == 0)


@pytest.mark.parametrize("smoothing", [-0.1, 1.0])
def test_rejects_smoothing_outside_0_1(smoothing):
    logits, gold = _logits_and_gold(rows=3)
    with pytest.raises(ValueError, match="label smoothing"):
        smoothed_cross_entropy(logits, gold, smoothing, PAD)


def test_symmetric_kl_is_both_kl_divergences_over_kept_rows():
    first, gold = _logits_and_gold()
    second, _ = _logits_and_gold(rows=37)
    second = second.flip(0)  # other logits for the same rows
    log_p, log_q = F.log_softmax(first, dim=-1), F.log_softmax(second, dim=-1)
    per_row = F.kl_div(log_q, log_p, log_target=True, reduction="none").sum(-1) + F.kl_div(
        log_p, log_q, log_target=True, reduction="none"
    ).sum(-1)
    expected = per_row[gold != PAD].sum()  # KL(p||q) + KL(q||p), padding rows left out
    torch.testing.assert_close(loss_module.symmetric_kl(first, second, gold, PAD), expected)
    assert loss_module.symmetric_kl(first, first.clone(), gold, PAD).abs() < 1e-5
    grad = torch.autograd.grad(loss_module.symmetric_kl(first.requires_grad_(), second, gold, PAD), first)[0]
    assert grad[gold == PAD].abs().max() == 0 and grad[gold != PAD].abs().max() > 0


def test_rdrop_loss_is_the_mean_cross_entropy_plus_the_weighted_symmetric_kl():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, 11, generator=generator)  # a batch of 3 sentences, run twice
    gold = torch.randint(4, 11, (3, 5), generator=generator)
    gold[0, 3:] = 0  # padding
    loss, cross_entropy = rdrop_loss(logits, gold, 0.1, alpha=5.0)
    first, second = logits[:3], logits[3:]
    expected_ce = (token_loss(first, gold, 0.1) + token_loss(second, gold, 0.1)) / 2
    torch.testing.assert_close(cross_entropy, expected_ce)
    torch.testing.assert_close(
        loss, expected_ce + 5.0 / 4 * symmetric_kl(first.flatten(0, 1), second.flatten(0, 1), gold.flatten(), 0)
    )
    assert loss > cross_entropy + 0.1  # different predictions cost something
