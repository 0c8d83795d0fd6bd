"""Attention (s2s.model.attention): masks, normalization, grouped queries, and sizes that must match."""

from __future__ import annotations

import pytest
import torch

from s2s.config import Attention, Cell
from s2s.errors import S2SError
from s2s.model.attention import attend, make_attention
from s2s.special_tokens import PAD
from tests.helpers import mixed_model, random_batch, tiny_model


@pytest.mark.parametrize("kind", [Attention.bahdanau, Attention.luong_general, Attention.luong_dot])
def test_attend_masks_padding_and_normalizes(kind):
    torch.manual_seed(0)
    module = make_attention(kind, 10, 10)
    values = torch.randn(3, 6, 10)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    values = values * mask.unsqueeze(-1)
    keys = module.prepare_keys(values)
    context, weights = attend(module, torch.randn(3, 10), keys, values, mask)
    assert context.shape == (3, 10) and weights.shape == (3, 6)
    assert (weights[~mask] == 0).all()
    assert (weights[mask] > 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3))
    assert weights[2, 0].item() == pytest.approx(1.0)
    torch.testing.assert_close(context[2], values[2, 0])


@pytest.mark.parametrize("kind", [Attention.bahdanau, Attention.luong_general, Attention.luong_dot])
def test_attend_with_several_queries_per_sentence_equals_copied_keys(kind):
    """Beam search's G queries per sentence share that sentence's keys, values and mask: the same as
    copying them to every query row, one query per row."""
    torch.manual_seed(2)
    module = make_attention(kind, 8, 8)
    values = torch.randn(3, 5, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    keys, query = module.prepare_keys(values), torch.randn(3 * 4, 8)  # 4 queries per sentence, in consecutive rows
    context, weights = attend(module, query, keys, values, mask)
    rows = torch.arange(3).repeat_interleave(4)
    copied_context, copied_weights = attend(module, query, keys[rows], values[rows], mask[rows])
    assert context.shape == (12, 8) and weights.shape == (12, 5)
    torch.testing.assert_close(weights, copied_weights)
    torch.testing.assert_close(context, copied_context)
    with pytest.raises(ValueError, match="do not split into groups"):
        attend(module, query[:11], keys, values, mask)


@pytest.mark.parametrize("kind", [Attention.bahdanau, Attention.luong_general, Attention.luong_dot])
def test_attend_ignores_garbage_at_padding(kind):
    # what sits at a padded position (keys and values) must not change the result
    torch.manual_seed(1)
    module = make_attention(kind, 8, 8)
    values = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    query = torch.randn(2, 8)
    c1, w1 = attend(module, query, module.prepare_keys(values), values, mask)
    noisy = values.clone()
    noisy[~mask] = 1e3 * torch.randn(int((~mask).sum()), 8)
    c2, w2 = attend(module, query, module.prepare_keys(noisy), noisy, mask)
    torch.testing.assert_close(w1, w2)
    torch.testing.assert_close(c1, c2)


@pytest.mark.parametrize("attention", [Attention.bahdanau, Attention.luong_general, Attention.luong_dot])
def test_model_step_attention_weights(attention):
    model = mixed_model(Cell.lstm, Cell.gru, attention)
    batch = random_batch(4, 5, max_len=7)
    memory, state = model.encode(batch.src, batch.src_lengths)
    tokens = torch.full((5,), 2)
    for _ in range(3):
        log_probs, state, weights = model.step(tokens, state, memory)
        mask = batch.src.ne(PAD)
        assert (weights[~mask] == 0).all()
        torch.testing.assert_close(weights.sum(-1), torch.ones(5))
        tokens = log_probs.argmax(-1)


def test_luong_dot_size_mismatch_raises():
    with pytest.raises(S2SError, match="luong_dot"):
        tiny_model(attention=Attention.luong_dot, hidden=8, decoder_hidden=12)
    # the matching size builds
    tiny_model(attention=Attention.luong_dot, hidden=8, decoder_hidden=16)
