"""s2s.model.dropout.Dropout: nn.Dropout's distribution with a faster mask."""

import pytest
import torch

from s2s.model.dropout import Dropout


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_drops_a_fraction_p_and_scales_the_rest(p):
    torch.manual_seed(0)
    dropout = Dropout(p).train()
    out = dropout(torch.ones(400_000))
    dropped = (out == 0).float().mean().item()
    assert abs(dropped - p) < 0.005  # about 6 standard deviations at these sizes
    torch.testing.assert_close(out[out != 0], torch.full_like(out[out != 0], 1 / (1 - p)))
    assert abs(out.mean().item() - 1.0) < 0.01  # the expectation is kept


def test_gradient_is_the_same_mask_and_scale():
    torch.manual_seed(1)
    x = torch.randn(64, 7, 32, requires_grad=True)
    out = Dropout(0.3).train()(x)
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.where(out == 0, 0.0, 1 / 0.7))


def test_bf16_input_keeps_dtype_and_the_fp32_probability():
    torch.manual_seed(2)
    out = Dropout(0.3).train()(torch.ones(200_000, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16
    assert abs((out == 0).float().mean().item() - 0.3) < 0.005


def test_identity_in_eval_mode_and_for_p_0_and_zero_for_p_1():
    x = torch.randn(5, 6)
    assert Dropout(0.5).eval()(x) is x
    assert Dropout(0.0).train()(x) is x
    assert torch.all(Dropout(1.0).train()(x) == 0)
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.5)


def test_whole_vectors_drops_entire_rows_with_probability_p():
    torch.manual_seed(3)
    out = Dropout(0.2, whole_vectors=True).train()(torch.ones(50_000, 4, 8))
    row_dropped = (out == 0).all(dim=-1)  # (50000, 4)
    row_kept = (out == 1 / 0.8).all(dim=-1)
    assert torch.all(row_dropped | row_kept)  # no row is partly dropped
    assert abs(row_dropped.float().mean().item() - 0.2) < 0.005
    x = torch.randn(3, 5)
    assert Dropout(0.5, whole_vectors=True).eval()(x) is x
