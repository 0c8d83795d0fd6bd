"""Recurrent cells (s2s.model.cells): the peephole LSTM and the layer-normalized split-input cells, against their
formulas."""

from __future__ import annotations

import torch
from torch import nn

from s2s.model.cells import PeepholeLSTMCell, SplitInputGRUCell, SplitInputLSTMCell
from tests.helpers import perturbed


def test_peephole_cell_with_zero_peepholes_equals_lstm_cell():
    torch.manual_seed(0)
    peephole = PeepholeLSTMCell(6, 5)
    assert peephole.peephole.abs().sum() == 0  # initialized at zero
    reference = nn.LSTMCell(6, 5)
    with torch.no_grad():
        reference.weight_ih.copy_(peephole.input_map.weight)
        reference.bias_ih.copy_(peephole.input_map.bias)
        reference.weight_hh.copy_(peephole.hidden_map.weight)
        reference.bias_hh.zero_()
    x, h, c = torch.randn(4, 6), torch.randn(4, 5), torch.randn(4, 5)
    ours = peephole(x, (h, c))
    theirs = reference(x, (h, c))
    torch.testing.assert_close(ours[0], theirs[0])
    torch.testing.assert_close(ours[1], theirs[1])


def test_peephole_weights_are_used():
    torch.manual_seed(0)
    cell = PeepholeLSTMCell(4, 3)
    x, h, c = torch.randn(2, 4), torch.randn(2, 3), torch.randn(2, 3)
    before = cell(x, (h, c))
    for gate in range(3):
        with torch.no_grad():
            cell.peephole.zero_()
            cell.peephole[gate] = 1.0
        after = cell(x, (h, c))
        assert not torch.allclose(before[0], after[0])
    # the gradient reaches the peephole weights
    cell.peephole.data.normal_()
    cell(x, (h, c))[0].sum().backward()
    assert cell.peephole.grad.abs().sum() > 0


def _normalized(x: torch.Tensor, gain: torch.Tensor, shift: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Layer normalization written out: x (B, H) over its last dimension."""
    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * gain + shift


def test_layer_normalized_lstm_cell_matches_the_formula():
    """gates_k = LN(W_ahead a + W_step [p; h])_k * gain_k + bias_k per gate k; h = o * tanh(LN(c))."""
    hidden = 6
    cell = perturbed(SplitInputLSTMCell(5, 4, hidden, layer_norm=True))
    torch.manual_seed(0)
    ahead, step, h, c = torch.randn(3, 5), torch.randn(3, 4), torch.randn(3, hidden), torch.randn(3, hidden)
    with torch.no_grad():
        new_h, new_c = cell(step, (h, c), cell.ahead_gates(ahead))
        summed = ahead @ cell.weight_ahead.T + torch.cat([step, h], dim=-1) @ cell.weight_step.T  # (B, 4H), no bias
        gain, shift = cell.gate_gain.view(4, hidden), cell.bias.view(4, hidden)
        i, f, g, o = (_normalized(summed[:, k * hidden : (k + 1) * hidden], gain[k], shift[k]) for k in range(4))
        expected_c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        expected_h = torch.sigmoid(o) * torch.tanh(_normalized(expected_c, cell.cell_gain, cell.cell_bias))
    torch.testing.assert_close(new_c, expected_c, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(new_h, expected_h, rtol=1e-5, atol=1e-6)
    # an upper layer (no ahead part): the step multiply alone is normalized
    upper = perturbed(SplitInputLSTMCell(0, 4, hidden, layer_norm=True))
    with torch.no_grad():
        _, upper_c = upper(step, (h, c))
        summed = torch.cat([step, h], dim=-1) @ upper.weight_step.T
        gain, shift = upper.gate_gain.view(4, hidden), upper.bias.view(4, hidden)
        i, f, g, _ = (_normalized(summed[:, k * hidden : (k + 1) * hidden], gain[k], shift[k]) for k in range(4))
    torch.testing.assert_close(upper_c, torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g), rtol=1e-5, atol=1e-6)


def test_layer_normalized_gru_cell_matches_the_formula():
    """The input side and the hidden side are normalized per gate separately; the reset gate scales the hidden
    side's candidate."""
    hidden = 6
    cell = perturbed(SplitInputGRUCell(5, 4, hidden, layer_norm=True))
    torch.manual_seed(0)
    ahead, step, h = torch.randn(3, 5), torch.randn(3, 4), torch.randn(3, hidden)
    with torch.no_grad():
        new_h = cell(step, h, cell.ahead_gates(ahead))
        from_input = ahead @ cell.weight_ahead.T + step @ cell.weight_step.T  # (B, 3H)
        from_hidden = h @ cell.weight_hidden.T
        parts = []
        for summed, gain, shift in (
            (from_input, cell.input_gain, cell.bias),
            (from_hidden, cell.hidden_gain, cell.bias_hidden),
        ):
            gain, shift = gain.view(3, hidden), shift.view(3, hidden)
            parts.append([_normalized(summed[:, k * hidden : (k + 1) * hidden], gain[k], shift[k]) for k in range(3)])
        (input_r, input_z, input_n), (hidden_r, hidden_z, hidden_n) = parts
        reset, update = torch.sigmoid(input_r + hidden_r), torch.sigmoid(input_z + hidden_z)
        candidate = torch.tanh(input_n + reset * hidden_n)
    torch.testing.assert_close(new_h, (1 - update) * candidate + update * h, rtol=1e-5, atol=1e-6)
