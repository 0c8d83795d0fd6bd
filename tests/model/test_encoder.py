"""The bidirectional encoder (s2s.model.encoder): final states and states that padding does not reach, peepholes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from s2s.config import Cell
from s2s.data.batching import make_batch
from tests.helpers import ENCODER_CELLS, random_batch, tiny_model


@pytest.mark.parametrize("cell", ENCODER_CELLS)
def test_encoder_final_state_ignores_padding(cell):
    model = tiny_model(cell=cell, layers=2)
    alone = make_batch([[5, 6, 7]], None, [0])
    padded = make_batch([[5, 6, 7], [4, 4, 4, 4, 4, 4, 4]], None, [0, 1])
    with torch.no_grad():
        a = model.encoder(alone.src, alone.src_lengths)
        b = model.encoder(padded.src, padded.src_lengths)
    torch.testing.assert_close(b.final_hidden[:, 0], a.final_hidden[:, 0], atol=1e-6, rtol=0)
    torch.testing.assert_close(b.states[0, :4], a.states[0], atol=1e-6, rtol=0)
    if a.final_cell is not None:
        torch.testing.assert_close(b.final_cell[:, 0], a.final_cell[:, 0], atol=1e-6, rtol=0)


def test_peephole_encoder_matches_lstm_semantics():
    """BiPeepholeLSTM with zero peepholes is a bidirectional LSTM: compare with nn.LSTM weights copied in."""
    torch.manual_seed(0)
    model = tiny_model(cell=Cell.peephole_lstm, hidden=8)
    reference = nn.LSTM(12, 8, 1, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for direction, suffix in enumerate(["", "_reverse"]):
            peephole = model.encoder.rnn.cells[direction]
            getattr(reference, "weight_ih_l0" + suffix).copy_(peephole.input_map.weight)
            getattr(reference, "bias_ih_l0" + suffix).copy_(peephole.input_map.bias)
            getattr(reference, "weight_hh_l0" + suffix).copy_(peephole.hidden_map.weight)
            getattr(reference, "bias_hh_l0" + suffix).zero_()
    batch = random_batch(2, 4, with_target=False)
    with torch.no_grad():
        ours = model.encoder(batch.src, batch.src_lengths)
        packed = nn.utils.rnn.pack_padded_sequence(
            model.encoder.embedding(batch.src), batch.src_lengths, batch_first=True, enforce_sorted=False
        )
        out, (h_n, c_n) = reference(packed)
        states, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=batch.src.size(1))
    torch.testing.assert_close(ours.states, states, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.final_hidden[0], torch.cat([h_n[0], h_n[1]], -1), atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.final_cell[0], torch.cat([c_n[0], c_n[1]], -1), atol=1e-5, rtol=0)
