"""Recurrent cells: torch's own, an LSTM with peephole connections, and the decoder's
split-input LSTM and GRU cells, optionally layer-normalized.

Layer normalization (Ba, Kiros & Hinton, 2016), `layer_norm=True` on the split-input cells:
each gate's summed input (ahead part + step part + hidden state, one multiply as without
normalization) is normalized over its H units, then scaled by a learned gain and shifted by
the cell's bias; the LSTM also normalizes c_t before its output tanh. The GRU normalizes its
input side and its hidden side separately, since its reset gate scales the hidden side's
candidate input alone.

Shapes: B batch, I input size, H hidden size, G gates (4 for the LSTM, 3 for the GRU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from s2s.config import Cell
from s2s.model.step_weights import StepGradients, linear, step_addmm


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


class SplitInputLSTMCell(nn.Module):
    """An LSTM cell (same gates as `nn.LSTMCell`) whose input comes in two parts.

    The *ahead* part (A wide) is known for all time steps in advance, e.g. the target
    embeddings under teacher forcing: its gate contribution is computed for every step
    in one large matrix multiply before the loop (`ahead_gates`). The *step* part (P
    wide), e.g. the fed-back attentional vector, is known only step by step; it shares
    a single matrix multiply with the hidden state, so each step does one multiply
    instead of two, and backward one weight gradient instead of two.
    """

    def __init__(self, ahead_size: int, step_size: int, hidden_size: int, layer_norm: bool = False):
        super().__init__()
        self.ahead_size, self.step_size, self.hidden_size = ahead_size, step_size, hidden_size
        # None in upper layers (A = 0): an empty weight would get no gradient, which DDP refuses
        self.weight_ahead = nn.Parameter(torch.empty(4 * hidden_size, ahead_size)) if ahead_size else None  # (4H, A)
        self.weight_step = nn.Parameter(torch.empty(4 * hidden_size, step_size + hidden_size))  # (4H, P+H)
        self.bias = nn.Parameter(
            torch.empty(4 * hidden_size)
        )  # (4H,) with layer_norm: the gates' shift after normalizing
        bound = hidden_size**-0.5  # nn.LSTMCell's initialisation
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)
        self.layer_norm = layer_norm
        if layer_norm:
            self.gate_gain = nn.Parameter(torch.ones(4 * hidden_size))  # (4H,)
            self.cell_gain = nn.Parameter(torch.ones(hidden_size))  # (H,) c_t's normalization
            self.cell_bias = nn.Parameter(torch.zeros(hidden_size))  # (H,)

    def ahead_gates(self, ahead: torch.Tensor) -> torch.Tensor:
        """(..., A) -> (..., 4H) the ahead part's gate inputs, bias included (with layer_norm: added
        after normalizing)."""
        return linear(ahead, self.weight_ahead, None if self.layer_norm else self.bias)

    def step_collectors(self) -> StepGradients:
        return StepGradients()  # weight_step

    def forward(
        self,
        step: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
        ahead_gates: torch.Tensor | None = None,
        step_gradients: StepGradients | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """step (B, P), state (B, H) x2, ahead_gates (B, 4H) (None: bias only) -> h, c (B, H).

        With `step_gradients` (training over a whole sequence), weight_step's gradient is
        computed once for all steps instead of step by step (see s2s.model.step_weights).
        """
        h, c = state
        bias = None if self.layer_norm else self.bias  # with layer_norm the bias comes after normalizing
        base = ahead_gates if ahead_gates is not None else bias  # (B, 4H), (4H,) or None
        gates = step_addmm(base, torch.cat([step, h], dim=-1), self.weight_step, step_gradients)  # (B, P+H) -> (B, 4H)
        if not self.layer_norm:
            return lstm_pointwise(gates, c)
        output_gate, c_next = lstm_gates(normalize_gates(gates, 4, self.gate_gain, self.bias), c)
        return output_gate * torch.tanh(
            F.layer_norm(c_next, (self.hidden_size,), self.cell_gain, self.cell_bias)
        ), c_next

    def from_torch_cell(
        self,
        weight_ih: torch.Tensor,
        weight_hh: torch.Tensor,
        bias_ih: torch.Tensor,
        bias_hh: torch.Tensor,
        is_step: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """This cell's weights from `nn.LSTMCell`'s, whose input columns `is_step` are the step part."""
        weights = {"weight_step": torch.cat([weight_ih[:, is_step], weight_hh], dim=1), "bias": bias_ih + bias_hh}
        return weights | ({"weight_ahead": weight_ih[:, ~is_step]} if self.ahead_size else {})


class SplitInputGRUCell(nn.Module):
    """A GRU cell (same gates as `nn.GRUCell`) whose input comes in two parts, like
    `SplitInputLSTMCell`: the *ahead* part's gate inputs (A wide) for all steps in one
    multiply before the loop, the *step* part (P wide, possibly 0) and the hidden state
    multiplied per step. The GRU's candidate gate resets only the hidden state's
    contribution, so the step input and h keep separate multiplies (and biases).
    """

    def __init__(self, ahead_size: int, step_size: int, hidden_size: int, layer_norm: bool = False):
        super().__init__()
        self.ahead_size, self.step_size, self.hidden_size = ahead_size, step_size, hidden_size
        self.weight_ahead = nn.Parameter(torch.empty(3 * hidden_size, ahead_size)) if ahead_size else None  # (3H, A)
        self.weight_step = nn.Parameter(torch.empty(3 * hidden_size, step_size)) if step_size else None  # (3H, P)
        self.weight_hidden = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))  # (3H, H)
        self.bias = nn.Parameter(torch.empty(3 * hidden_size))  # (3H,) the input side's
        self.bias_hidden = nn.Parameter(torch.empty(3 * hidden_size))  # (3H,) inside the reset for the candidate
        bound = hidden_size**-0.5  # nn.GRUCell's initialisation
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)
        self.layer_norm = layer_norm
        if layer_norm:  # the biases become the shifts after normalizing
            self.input_gain = nn.Parameter(torch.ones(3 * hidden_size))  # (3H,)
            self.hidden_gain = nn.Parameter(torch.ones(3 * hidden_size))  # (3H,)

    def ahead_gates(self, ahead: torch.Tensor) -> torch.Tensor:
        """(..., A) -> (..., 3H) the ahead part's gate inputs, input bias included (with layer_norm:
        added after normalizing)."""
        return linear(ahead, self.weight_ahead, None if self.layer_norm else self.bias)

    def step_collectors(self) -> tuple[StepGradients, StepGradients]:
        return StepGradients(), StepGradients()  # weight_step, weight_hidden

    def forward(
        self,
        step: torch.Tensor,
        h: torch.Tensor,
        ahead_gates: torch.Tensor | None = None,
        step_gradients: tuple[StepGradients, StepGradients] | None = None,
    ) -> torch.Tensor:
        """step (B, P), h (B, H), ahead_gates (B, 3H) (None: bias only) -> new h (B, H).

        With `step_gradients` (training over a whole sequence), the per-step weights'
        gradients are computed once for all steps (see s2s.model.step_weights).
        """
        bias, bias_hidden = (
            (None, None) if self.layer_norm else (self.bias, self.bias_hidden)
        )  # with layer_norm: after normalizing
        base = ahead_gates if ahead_gates is not None else bias  # (B, 3H), (3H,) or None
        step_collector, hidden_collector = step_gradients if step_gradients is not None else (None, None)
        input_gates = step_addmm(base, step, self.weight_step, step_collector) if self.step_size else base  # (B, 3H)
        hidden_gates = step_addmm(bias_hidden, h, self.weight_hidden, hidden_collector)  # (B, 3H)
        if self.layer_norm:
            input_gates = normalize_gates(input_gates, 3, self.input_gain, self.bias)
            hidden_gates = normalize_gates(hidden_gates, 3, self.hidden_gain, self.bias_hidden)
        return gru_pointwise(input_gates, hidden_gates, h)

    def from_torch_cell(
        self,
        weight_ih: torch.Tensor,
        weight_hh: torch.Tensor,
        bias_ih: torch.Tensor,
        bias_hh: torch.Tensor,
        is_step: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """This cell's weights from `nn.GRUCell`'s, whose input columns `is_step` are the step part."""
        weights = {"weight_hidden": weight_hh, "bias": bias_ih, "bias_hidden": bias_hh}
        weights |= {"weight_ahead": weight_ih[:, ~is_step]} if self.ahead_size else {}
        return weights | ({"weight_step": weight_ih[:, is_step]} if self.step_size else {})


def gru_pointwise(input_gates: torch.Tensor, hidden_gates: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The GRU's elementwise part: gate inputs (B, 3H) or (3H,) from the input and (B, 3H) from h,
    in nn.GRUCell's order (reset, update, candidate), h (B, H) -> new h (B, H)."""
    input_reset, input_update, input_new = input_gates.chunk(3, dim=-1)
    hidden_reset, hidden_update, hidden_new = hidden_gates.chunk(3, dim=-1)
    reset = torch.sigmoid(input_reset + hidden_reset)
    update = torch.sigmoid(input_update + hidden_update)
    candidate = torch.tanh(input_new + reset * hidden_new)
    return candidate + update * (h - candidate)  # (1 - z) n + z h


def lstm_pointwise(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The LSTM's elementwise part: gate inputs (B, 4H) in nn.LSTMCell's order, c (B, H) -> h, c (B, H)."""
    output_gate, c_next = lstm_gates(gates, c)
    return output_gate * torch.tanh(c_next), c_next


def lstm_gates(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gate inputs (B, 4H) in nn.LSTMCell's order, c (B, H) -> the output gate sigmoid(o) and c_t (B, H)."""
    i, f, g, o = gates.chunk(4, dim=-1)  # each (B, H)
    return torch.sigmoid(o), torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)


def normalize_gates(gates: torch.Tensor, num_gates: int, gain: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Layer normalization of each gate's summed input over its H units: gates (B, G*H), gain and
    shift (G*H,) -> (B, G*H)."""
    normalized = F.layer_norm(gates.unflatten(-1, (num_gates, -1)), (gates.size(-1) // num_gates,))  # (B, G, H)
    return torch.addcmul(shift, normalized.flatten(-2), gain)


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
