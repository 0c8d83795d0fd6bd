"""Recurrent cells: torch's own, plus an LSTM with peephole connections.

Shapes: B batch, I input size, H hidden size.
"""

from __future__ import annotations

import torch
from torch import nn

from s2s.config import Cell


class PeepholeLSTMCell(nn.Module):
    """An LSTM cell whose input and forget gates see c_{t-1} and whose output gate sees c_t
    (Gers & Schmidhuber, 2000). Same call signature as `nn.LSTMCell`."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.input_map = nn.Linear(input_size, 4 * hidden_size)
        self.hidden_map = nn.Linear(hidden_size, 4 * hidden_size, bias=False)
        self.peephole = nn.Parameter(torch.zeros(3, hidden_size))  # input, forget, output gates

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state  # (B, H), (B, H)
        gates = self.input_map(x) + self.hidden_map(h)  # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=-1)  # each (B, H)
        i = torch.sigmoid(i + self.peephole[0] * c)
        f = torch.sigmoid(f + self.peephole[1] * c)
        c_next = f * c + i * torch.tanh(g)
        o = torch.sigmoid(o + self.peephole[2] * c_next)
        return o * torch.tanh(c_next), c_next


def make_cell(cell: Cell, input_size: int, hidden_size: int) -> nn.Module:
    """One step of the chosen recurrent cell."""
    match cell:
        case Cell.lstm:
            return nn.LSTMCell(input_size, hidden_size)
        case Cell.gru:
            return nn.GRUCell(input_size, hidden_size)
        case Cell.rnn:
            return nn.RNNCell(input_size, hidden_size, nonlinearity="tanh")
        case Cell.peephole_lstm:
            return PeepholeLSTMCell(input_size, hidden_size)


def has_memory_cell(cell: Cell) -> bool:
    """LSTMs carry a cell state c beside the hidden state h."""
    return cell in (Cell.lstm, Cell.peephole_lstm)
