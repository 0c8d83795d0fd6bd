"""Tests for the encoder's fused path on a CPU (s2s.model.aligned_rnn): right-aligned padded
batches in oneDNN's kernels must give what packing gives."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from s2s.config import Cell
from s2s.model.aligned_rnn import aligned_bidirectional, fused_on_padding
from tests.helpers import NEEDS_BF16, random_batch, tiny_model

LENGTHS = torch.tensor([6, 3, 1, 6, 4])  # unsorted, with a one-token sentence


def packed_run(rnn: nn.Module, x: torch.Tensor, lengths: torch.Tensor):
    """nn.LSTM / nn.GRU over a PackedSequence: outputs (B, S, 2H), h_n, c_n (None for the GRU)."""
    out, final = rnn(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
    h_n, c_n = final if isinstance(rnn, nn.LSTM) else (final, None)
    return out, h_n, c_n


def padded_input(dtype=torch.float64, width: int = 7, lengths: torch.Tensor = LENGTHS) -> torch.Tensor:
    x = torch.randn(len(lengths), int(lengths.max()), width, dtype=dtype)
    return x * (torch.arange(x.size(1)) < lengths.unsqueeze(1)).unsqueeze(-1)  # zero at padding, like PAD's embedding


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("width", [7, 32])
def test_outputs_final_states_and_gradients_equal_packings(kind, layers, width):
    torch.manual_seed(0)
    rnn = kind(width, 5, layers, batch_first=True, bidirectional=True).double()
    x = padded_input(width=width)
    x_packed, x_aligned = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected = packed_run(rnn, x_packed, LENGTHS)
    got = aligned_bidirectional(rnn, x_aligned, LENGTHS, nn.Identity())
    for want, have in zip(expected, got):
        if want is None:
            assert have is None
        else:
            torch.testing.assert_close(have, want, rtol=1e-12, atol=1e-12)
    # a loss that reaches every output and both final states: all gradients must agree too
    weights = [torch.randn_like(t) for t in expected if t is not None]
    loss = lambda outs: sum((t * w).sum() for t, w in zip([t for t in outs if t is not None], weights))  # noqa: E731
    want_grads = torch.autograd.grad(loss(expected), [x_packed, *rnn.parameters()])
    have_grads = torch.autograd.grad(loss(got), [x_aligned, *rnn.parameters()])
    for want, have in zip(want_grads, have_grads):
        torch.testing.assert_close(have, want, rtol=1e-10, atol=1e-12)


def test_outputs_are_zero_at_padding_and_reach_the_last_real_token():
    torch.manual_seed(1)
    rnn = nn.LSTM(7, 5, batch_first=True, bidirectional=True)
    out, h_n, _ = aligned_bidirectional(rnn, padded_input(torch.float32), LENGTHS, nn.Identity())
    padding = torch.arange(out.size(1)) >= LENGTHS.unsqueeze(1)  # (B, S)
    assert out[padding].abs().max() == 0
    assert out[~padding].abs().min() > 0
    rows = torch.arange(len(LENGTHS))
    torch.testing.assert_close(h_n[0], out[rows, LENGTHS - 1, :5])  # forward: after the last real token
    torch.testing.assert_close(h_n[1], out[:, 0, 5:])  # backward: after reading back to the first


@NEEDS_BF16
def test_bf16_autocast_is_close_to_fp32_and_keeps_padding_exact():
    torch.manual_seed(2)
    rnn = nn.LSTM(64, 32, batch_first=True, bidirectional=True)
    lengths = torch.tensor([9, 2, 5, 9, 7, 1])
    x = padded_input(torch.float32, 64, lengths)
    want = packed_run(rnn, x, lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = aligned_bidirectional(rnn, x, lengths, nn.Identity())
    for w, g in zip(want, got):
        torch.testing.assert_close(g.float(), w, rtol=0.05, atol=0.03)
    padding = torch.arange(x.size(1)) >= lengths.unsqueeze(1)
    assert got[0][padding].abs().max() == 0


def test_between_layers_acts_on_the_upper_layers_input():
    torch.manual_seed(3)
    rnn = nn.LSTM(7, 5, 2, batch_first=True, bidirectional=True).double()
    x = padded_input()
    drop_all = lambda t: t * 0.0  # noqa: E731 layer 1 sees only zeros
    dropped, _, _ = aligned_bidirectional(rnn, x, LENGTHS, drop_all)
    zero_input = nn.LSTM(10, 5, 1, batch_first=True, bidirectional=True).double()  # layer 1 reads 2 x 5
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        for suffix in ("", "_reverse"):
            getattr(zero_input, f"{name}_l0{suffix}").data.copy_(getattr(rnn, f"{name}_l1{suffix}"))
    want, _, _ = packed_run(zero_input, x.new_zeros(*x.shape[:2], 10), LENGTHS)
    torch.testing.assert_close(dropped, want)


def test_fused_path_is_chosen_for_bidirectional_lstm_and_gru_on_a_cpu_only():
    cpu = torch.device("cpu")
    assert fused_on_padding(nn.LSTM(4, 3, batch_first=True, bidirectional=True), cpu)
    assert fused_on_padding(nn.GRU(4, 3, batch_first=True, bidirectional=True), cpu)
    assert not fused_on_padding(nn.LSTM(4, 3, batch_first=True, bidirectional=True), torch.device("cuda"))
    assert not fused_on_padding(nn.RNN(4, 3, batch_first=True, bidirectional=True), cpu)
    assert not fused_on_padding(nn.LSTM(4, 3, batch_first=True, bidirectional=False), cpu)
    assert not fused_on_padding(nn.LSTM(4, 3, batch_first=True, bidirectional=True, proj_size=2), cpu)


@pytest.mark.parametrize("cell", [Cell.lstm, Cell.gru])
def test_encoder_on_a_cpu_equals_its_packed_run(cell, monkeypatch):
    model = tiny_model(seed=4, cell=cell, layers=2)
    batch = random_batch(seed=5, count=9, max_len=11)
    fused = model.encoder(batch.src, batch.src_lengths)
    monkeypatch.setattr("s2s.model.encoder.fused_on_padding", lambda rnn, device: False)
    packed = model.encoder(batch.src, batch.src_lengths)
    torch.testing.assert_close(fused.states, packed.states, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fused.final_hidden, packed.final_hidden, rtol=1e-5, atol=1e-6)
    if cell == Cell.lstm:
        torch.testing.assert_close(fused.final_cell, packed.final_cell, rtol=1e-5, atol=1e-6)
