"""int8 weights for decoding on a CPU (search.precision=int8).

A decoder step multiplies only as many rows as there are sentences (or hypotheses) still
being decoded, tens to a few hundred, and in fp32 such thin multiplies run far below a
CPU's matrix-multiply peak. `int8_copy` returns a copy of a trained model whose matrix
multiplies run in int8 with torch's own dynamic quantization kernels (fbgemm / oneDNN):

- each weight W (N, K) is quantized once, per output row: W ~ scale_n * q_nk, q in [-127, 127];
- each input x (B, K) is quantized per call, per tensor, to 7-bit unsigned codes
  (`reduce_range`: AVX2 and AVX512 without VNNI add pairs of int8 products in int16, which
  full 8-bit codes can overflow); products are summed in int32 and the result is fp32.

What is converted: the decoder's per-step weights (its LSTM, GRU or peephole-LSTM cells,
the attention's query projection, W_c, the output layer) and, once per sentence, the
attention's key projection and the bridge. Embeddings, the encoder's LSTM (oneDNN), an Elman
decoder cell (nn.RNNCell), the attention's energy vector (a single output) and every
elementwise operation stay fp32, as do the log-probabilities. Training never sees int8: only
a copy made for decoding is converted, and it has no state_dict worth saving.

torch flags its quantized tensors as deprecated (a warning at conversion, silenced here):
a torch without these kernels gets a one-line error from `int8_copy`, not a crash.

Shapes: B rows, K input width, N output width.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from s2s.errors import S2SError

_QUANTIZATION_WARNINGS = ".*(quantize_per_channel|quantized tensor|deprecated).*"


class Int8Weight:
    """A weight (N, K), and optionally its bias (N,), prepacked for int8 multiplies."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        weight = weight.detach().float()
        self.out_features, self.in_features = weight.shape
        scales = (weight.abs().amax(dim=1) / 127.0).clamp(min=1e-12).double()  # (N,) symmetric, per output row
        zero_points = torch.zeros(self.out_features, dtype=torch.long)
        with (
            warnings.catch_warnings()
        ):  # torch flags quantized tensors as deprecated; its int8 kernels are what this needs
            warnings.filterwarnings("ignore", message=_QUANTIZATION_WARNINGS)
            codes = torch.quantize_per_channel(weight, scales, zero_points, axis=0, dtype=torch.qint8)
            self.packed = torch.ops.quantized.linear_prepack(codes, None if bias is None else bias.detach().float())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., K) fp32 -> (..., N) fp32: x W^T (+ bias)."""
        return torch.ops.quantized.linear_dynamic(x, self.packed, True)  # reduce_range: 7-bit input codes


class Int8Linear(nn.Module):
    """`nn.Linear` for decoding, with its weight and bias in an `Int8Weight`."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = Int8Weight(linear.weight, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight(x)  # (..., K) -> (..., N)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def int8_available() -> bool:
    """This torch has int8 kernels for this CPU (x86 with AVX2 or better, or ARM)."""
    engine = torch.backends.quantized.engine
    kernels = hasattr(torch, "quantize_per_channel") and hasattr(torch.ops.quantized, "linear_dynamic")
    return engine is not None and engine != "none" and kernels


def int8_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` (on the CPU) for decoding with int8 matrix multiplies; `model` is unchanged."""
    if not int8_available():
        raise S2SError(
            f"search.precision=int8 needs torch's int8 CPU kernels, which this torch lacks (quantized engine: "
            f"{torch.backends.quantized.engine}); use search.precision=fp32"
        )
    model = copy.deepcopy(model).cpu().eval()
    try:
        for cell in model.decoder.cells:
            _quantize_cell(cell)
        for owner, name in _linear_layers(model):
            setattr(owner, name, Int8Linear(getattr(owner, name)))
    except RuntimeError as error:  # e.g. an engine without per-row int8 weights
        raise S2SError(
            f"search.precision=int8: torch's {torch.backends.quantized.engine} int8 kernels failed "
            f"({str(error).splitlines()[0]}); use search.precision=fp32"
        ) from None
    return model


def _quantize_cell(cell: nn.Module) -> None:
    """Replace a split-input cell's weight parameters by int8 weights (s2s.model.step_weights takes both);
    torch's own cells have none of these names and stay as they are."""
    for name in ("weight_ahead", "weight_step", "weight_hidden"):
        weight = getattr(cell, name, None)
        if isinstance(weight, nn.Parameter):
            delattr(cell, name)
            setattr(cell, name, Int8Weight(weight))


def _linear_layers(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(owner, attribute) of the nn.Linear layers to convert: the decoder's, its cells' (peephole
    LSTM), and the attention's key and query projections."""
    decoder = model.decoder
    owners = [
        (decoder, ("bridge_hidden", "bridge_cell", "combine", "output")),
        (decoder.attention, ("key_map", "query_map")),
    ]
    owners += [(cell, ("input_map", "hidden_map")) for cell in decoder.cells]
    return [
        (owner, name) for owner, names in owners for name in names if isinstance(getattr(owner, name, None), nn.Linear)
    ]
