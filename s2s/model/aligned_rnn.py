"""A bidirectional LSTM or GRU over a padded batch, exact as if packed, in one fused call per layer.

On a CPU, `nn.LSTM` and `nn.GRU` run oneDNN's fused kernels only on a plain tensor: given a
`PackedSequence` whose lengths differ they fall back to a step-by-step loop of small matrix
multiplies, which makes the encoder's forward and backward much slower, most of all under
bf16 autocast (docs/performance.md, "The encoder on a CPU"). Run on padding, a fused kernel
gives outputs that are right for the forward direction at real positions only; the backward
direction would read the padding first, and neither direction's final state would be the one
at each sentence's real end.

So each sentence is right-aligned (its padding moved to the front) and the input gets one more
feature, 1 at padding and 0 at real tokens (and zero features after it up to a width that
oneDNN multiplies fast), whose column in the input weights is a constant:
-1e4 for the LSTM's input gate and +1e4 for its forget gate (the GRU: +1e4 for its update
gate), 0 elsewhere. At a padding step the gates then saturate to exactly i = 0, f = 1 (z = 1),
so the cell (the GRU's hidden) state passes through unchanged and no gradient enters through
those gates. The forward direction reads its padding first, from the zero initial state, which
stays exactly zero; it then reads the sentence and ends at the last real token. The backward
direction reads the sentence first and carries its final cell state unchanged through the
padding. Final hidden states are read off the outputs at each sentence's ends (the LSTM's h
after padding is o * tanh(c), not h). Outputs at padding are zeroed and the layout is turned
back to left-aligned. Outputs, final states and all gradients equal the packed run's
(tests/model/test_aligned_rnn.py), to rounding.

Shapes: B batch, S longest length, I input size, H hidden size per direction.
"""

from __future__ import annotations

import torch
from torch import nn

SATURATION = 1e4  # a gate's input from the padding feature: sigmoid gives exactly 0 or 1 in fp32 and bf16
WIDTH_MULTIPLE = 32  # the padding feature comes with zero columns up to a multiple of this: oneDNN's bf16
# kernels are fast for widths like 256 or 288 and much slower for an odd width such as 257 (docs/performance.md)


def fused_on_padding(rnn: nn.Module, device: torch.device) -> bool:
    """Whether `aligned_bidirectional` should replace packing: a bidirectional, batch-first nn.LSTM or
    nn.GRU with biases on a CPU (cuDNN runs packed sequences in its own fused kernels)."""
    if device.type != "cpu" or not isinstance(rnn, (nn.LSTM, nn.GRU)):
        return False
    return rnn.bidirectional and rnn.batch_first and rnn.bias and not getattr(rnn, "proj_size", 0)


def aligned_bidirectional(
    rnn: nn.LSTM | nn.GRU, x: torch.Tensor, lengths: torch.Tensor, between_layers: nn.Module
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """x (B, S, I) left-aligned (padding at the end), lengths (B,) ->
    outputs (B, S, 2H) zero at padding, h_n (L*2, B, H) and c_n (L*2, B, H) (None for the GRU),
    in nn.LSTM's order (layer 0 forward, layer 0 backward, ...); `between_layers` is applied to each
    layer's outputs but the last (dropout)."""
    batch, length, _ = x.shape
    lengths = lengths.to(x.device)
    lstm = isinstance(rnn, nn.LSTM)
    shift = length - lengths  # (B,) padding positions at the front once right-aligned
    positions = torch.arange(length, device=x.device)  # (S,)
    to_right = (
        positions.unsqueeze(0) - shift.unsqueeze(1)
    ) % length  # (B, S) right-aligned position p reads left position to_right[p]
    to_left = (positions.unsqueeze(0) + shift.unsqueeze(1)) % length  # (B, S) the inverse
    flag = (positions.unsqueeze(0) < shift.unsqueeze(1)).unsqueeze(-1)  # (B, S, 1) right-aligned padding
    rows = torch.arange(batch, device=x.device)
    layer_input = _gather_time(x, to_right)  # (B, S, I)
    finals_h, finals_c = [], []
    for layer in range(rnn.num_layers):
        if layer > 0:
            layer_input = between_layers(layer_input)
        weights = [_layer_weights(rnn, layer, suffix, lstm) for suffix in ("", "_reverse")]
        augmented = torch.cat([layer_input, _padding_feature(flag, layer_input)], dim=-1)  # (B, S, I + X)
        zeros = augmented.new_zeros(2, batch, rnn.hidden_size)  # (2, B, H) initial states
        if lstm:
            out, _, c_n = torch.lstm(
                augmented, (zeros, zeros), [w for pair in weights for w in pair], True, 1, 0.0, rnn.training, True, True
            )
            finals_c += [c_n[0], c_n[1]]
        else:
            out, _ = torch.gru(
                augmented, zeros, [w for pair in weights for w in pair], True, 1, 0.0, rnn.training, True, True
            )
        out = out.masked_fill(flag, 0.0)  # (B, S, 2H) the backward direction's padding outputs are not zero
        # forward: after the last position; backward: after reading back to each sentence's first token, at `shift`
        finals_h += [out[:, -1, : rnn.hidden_size], out[rows, shift, rnn.hidden_size :]]  # (B, H) each
        layer_input = out
    outputs = _gather_time(layer_input, to_left)  # (B, S, 2H) left-aligned again, zero at padding
    return outputs, torch.stack(finals_h), torch.stack(finals_c) if lstm else None


def _extra_width(input_size: int) -> int:
    """X: the padding feature and the zero columns after it."""
    return WIDTH_MULTIPLE - input_size % WIDTH_MULTIPLE


def _padding_feature(flag: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """flag (B, S, 1) True at padding -> (B, S, X): the flag as 0/1, then zeros."""
    extra = x.new_zeros(*x.shape[:-1], _extra_width(x.size(-1)))  # (B, S, X)
    extra[..., :1] = flag.to(x.dtype)
    return extra


def _layer_weights(rnn: nn.LSTM | nn.GRU, layer: int, suffix: str, lstm: bool) -> list[torch.Tensor]:
    """One direction's [w_ih with the padding feature's columns (G*H, I + X), w_hh, b_ih, b_hh]."""
    w_ih = getattr(rnn, f"weight_ih_l{layer}{suffix}")
    hidden = rnn.hidden_size
    columns = w_ih.new_zeros(w_ih.size(0), _extra_width(w_ih.size(1)))  # (G*H, X) constants: no gradient
    if lstm:  # gates i, f, g, o
        columns[:hidden, 0] = -SATURATION
        columns[hidden : 2 * hidden, 0] = SATURATION
    else:  # gates r, z, n
        columns[hidden : 2 * hidden, 0] = SATURATION
    names = (f"weight_hh_l{layer}{suffix}", f"bias_ih_l{layer}{suffix}", f"bias_hh_l{layer}{suffix}")
    return [torch.cat([w_ih, columns], dim=1), *(getattr(rnn, name) for name in names)]


def _gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, S, D) reordered along time by index (B, S)."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))
