"""One weight gradient for a weight used at every time step of a recurrent loop.

Autograd differentiates a recurrent loop step by step: a weight W used at each of T
steps gets T small weight-gradient products, grad_t^T x_t with only B rows each, and T
accumulations into W.grad. `step_addmm` computes the same forward, returns the input
gradients step by step as usual, but keeps each step's (x_t, grad_t) in a `StepGradients`
collector; the last backward call of the pass computes

    grad W = [grad_1; ...; grad_T]^T [x_1; ...; x_T]

as one matrix multiply over all T*B rows, which runs much closer to the machine's peak.

Shapes: B batch, K input width, N output width.
"""

from __future__ import annotations

import torch


class StepGradients:
    """Collects the per-step inputs and output gradients of one weight during one forward/backward pass."""

    def __init__(self) -> None:
        self.calls = 0  # forward calls so far; the backward call that brings the count back to them is the last
        self.inputs: list[torch.Tensor] = []  # (B, K) per step
        self.grads: list[torch.Tensor] = []  # (B, N) per step
        self.cast_weight: torch.Tensor | None = None  # under autocast: the weight cast once for the whole pass


def step_addmm(
    base: torch.Tensor | None, x: torch.Tensor, weight: torch.Tensor, collector: StepGradients | None
) -> torch.Tensor:
    """base (B, N) or (N,) (None: nothing) + x (B, K) @ weight (N, K)^T -> (B, N); with a collector, weight's
    gradient is deferred to it.

    Every call's output must reach the loss (true of a teacher-forced decoder, whose
    every step feeds the logits), since the weight gradient is made by the last of them.
    """
    if collector is None:
        return linear(x, weight, base)
    collector.calls += 1
    return _StepAddmm.apply(base, x, weight, collector)


def linear(x: torch.Tensor, weight, bias: torch.Tensor | None) -> torch.Tensor:
    """x (..., K) @ weight (N, K)^T + bias (N,) or (B, N) (None: no bias) -> (..., N), one addmm for 2-D x;
    weight a tensor, or an int8 weight (s2s.model.int8) in a model converted for decoding."""
    if isinstance(weight, torch.Tensor):
        return torch.nn.functional.linear(x, weight, bias)
    return weight(x) if bias is None else weight(x) + bias


def step_linear(layer: torch.nn.Linear, x: torch.Tensor, collector: StepGradients | None) -> torch.Tensor:
    """layer(x) for x (B, K) -> (B, N); with a collector, the weight's gradient is deferred to it.

    The layer must have a bias (it is the addmm's base); the decoder's per-step layers all do.
    """
    if collector is None:
        return layer(x)
    return step_addmm(layer.bias, x, layer.weight, collector)


class _StepAddmm(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, base: torch.Tensor | None, x: torch.Tensor, weight: torch.Tensor, collector: StepGradients
    ) -> torch.Tensor:
        device = x.device.type
        ctx.dtypes = (base.dtype if base is not None else None, x.dtype, weight.dtype)
        ctx.base_shape = base.shape if base is not None else None
        if torch.is_autocast_enabled(device):  # autocast does not reach inside: cast as it would for addmm
            dtype = torch.get_autocast_dtype(device)
            if collector.cast_weight is None:  # a collector lives for one pass, in which the weight does not change
                collector.cast_weight = weight.to(dtype)  # once per pass, not once per step
            base, x, weight = base.to(dtype) if base is not None else None, x.to(dtype), collector.cast_weight
        with torch.autocast(device, enabled=False):
            out = torch.addmm(base, x, weight.t()) if base is not None else x @ weight.t()  # (B, N)
        ctx.save_for_backward(x, weight)
        ctx.collector = collector
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        base_dtype, x_dtype, weight_dtype = ctx.dtypes
        grad = grad.to(x.dtype)
        grad_x = (grad @ weight).to(x_dtype)  # (B, K)
        collector: StepGradients = ctx.collector
        collector.inputs.append(x)
        collector.grads.append(grad)
        grad_weight = None
        if len(collector.grads) == collector.calls:  # the last step to be differentiated: all are in
            grad_weight = (torch.cat(collector.grads).t() @ torch.cat(collector.inputs)).to(weight_dtype)  # (N, K)
            collector.inputs.clear()
            collector.grads.clear()
        if ctx.base_shape is None:
            return None, grad_x, grad_weight, None
        grad_base = grad if len(ctx.base_shape) == 2 else grad.sum(dim=0)
        return grad_base.to(base_dtype), grad_x, grad_weight, None
