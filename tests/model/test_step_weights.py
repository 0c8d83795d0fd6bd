"""Deferred weight gradients of the recurrent steps (s2s.model.step_weights) equal autograd's step-by-step ones."""

from __future__ import annotations

import pytest
import torch

from s2s.config import Attention, Cell
from tests.helpers import NEEDS_BF16, random_batch, tiny_model, weight_gradients


@pytest.mark.parametrize("decoder_cell", [Cell.lstm, Cell.gru])
@pytest.mark.parametrize(
    "attention,input_feeding", [(Attention.bahdanau, True), (Attention.bahdanau, False), (Attention.none, False)]
)
@pytest.mark.parametrize("layers", [1, 2])
def test_deferred_recurrent_weight_gradients_equal_autograds(decoder_cell, attention, input_feeding, layers):
    """One weight-gradient multiply per sequence gives autograd's step-by-step gradients, for every parameter."""
    model = tiny_model(
        decoder_cell=decoder_cell, attention=attention, input_feeding=input_feeding, layers=layers, eval_mode=False
    )
    model.decoder.dropout.p = model.decoder.embedding_dropout.p = model.encoder.embedding_dropout.p = 0.0
    batch = random_batch(7, 5)
    plain, deferred = weight_gradients(model, batch, defer=False), weight_gradients(model, batch, defer=True)
    per_step = "weight_step" if decoder_cell == Cell.lstm else "weight_hidden"
    assert plain.keys() == deferred.keys() and any(name.endswith(per_step) for name in plain)
    for name in plain:
        torch.testing.assert_close(deferred[name], plain[name], rtol=1e-4, atol=1e-6, msg=name)


@NEEDS_BF16
@pytest.mark.parametrize("layer_norm", [False, True])
@pytest.mark.parametrize("decoder_cell", [Cell.lstm, Cell.gru])
def test_deferred_recurrent_weight_gradients_under_bf16_autocast(decoder_cell, layer_norm):
    model = tiny_model(
        decoder_cell=decoder_cell, attention=Attention.bahdanau, layers=2, layer_norm=layer_norm, eval_mode=False
    )
    model.decoder.dropout.p = model.decoder.embedding_dropout.p = model.encoder.embedding_dropout.p = 0.0
    batch = random_batch(8, 5)
    plain, deferred = (
        weight_gradients(model, batch, defer=False, autocast=True),
        weight_gradients(model, batch, defer=True, autocast=True),
    )
    for name in plain:
        assert deferred[name].dtype == torch.float32
        torch.testing.assert_close(deferred[name], plain[name], rtol=0.05, atol=2e-3, msg=name)


def test_feed_dropout_deferred_gradients_equal_autograds():
    """Under the same dropout masks (same seed), deferred per-step weight gradients equal autograd's."""
    model = tiny_model(dropout=0.3, layers=2, feed_dropout=True, eval_mode=False)
    batch = random_batch(7, 5)
    torch.manual_seed(11)
    plain = weight_gradients(model, batch, defer=False)
    torch.manual_seed(11)
    deferred = weight_gradients(model, batch, defer=True)
    assert plain.keys() == deferred.keys()
    for name in plain:
        torch.testing.assert_close(deferred[name], plain[name], rtol=1e-4, atol=1e-6, msg=name)
