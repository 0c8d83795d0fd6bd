"""The decoder (s2s.model.decoder): torch-cell checkpoints, teacher forcing equals stepping, tied embeddings,
layer norm, feed dropout."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from s2s.config import Attention, Cell, SearchConfig
from s2s.data.batching import make_batch
from s2s.decoding.search import greedy
from s2s.errors import S2SError
from s2s.special_tokens import PAD
from tests.helpers import VOCAB, perturbed, random_batch, random_ids, tiny_model, weight_gradients


def test_rnn_decoder_cell_works():
    model = tiny_model(decoder_cell=Cell.rnn, attention=Attention.bahdanau)
    batch = random_batch(1, 2)
    assert model(batch.src, batch.src_lengths, batch.tgt_in).shape == (*batch.tgt_in.shape, VOCAB)


@pytest.mark.parametrize("decoder_hidden", [12, 20])
def test_tied_target_embeddings_share_parameter(decoder_hidden):
    model = tiny_model(tie=True, embedding=10, decoder_hidden=decoder_hidden)
    assert model.decoder.output.weight is model.decoder.embedding.weight
    names = [n for n, _ in model.named_parameters()]
    assert "decoder.output.weight" not in names  # counted once
    batch = random_batch(5, 2)
    logits = model(batch.src, batch.src_lengths, batch.tgt_in)
    assert logits.shape == (*batch.tgt_in.shape, VOCAB)
    # a gradient step on the output projection moves the embedding too
    logits.sum().backward()
    assert model.decoder.embedding.weight.grad is not None
    untied = tiny_model(tie=False, embedding=10, decoder_hidden=decoder_hidden)
    assert untied.decoder.output.weight is not untied.decoder.embedding.weight


TORCH_CELLS = {Cell.lstm: nn.LSTMCell, Cell.gru: nn.GRUCell}


@pytest.mark.parametrize("decoder_cell", [Cell.lstm, Cell.gru])
@pytest.mark.parametrize(
    "attention,input_feeding", [(Attention.bahdanau, True), (Attention.bahdanau, False), (Attention.none, False)]
)
@pytest.mark.parametrize("layers", [1, 2])
def test_decoder_loads_torch_cell_weights_and_computes_the_same(decoder_cell, attention, input_feeding, layers):
    """A decoder checkpoint with nn.LSTMCell / nn.GRUCell layers loads into the split-input cells and gives the
    same steps."""
    model = tiny_model(decoder_cell=decoder_cell, attention=attention, input_feeding=input_feeding, layers=layers)
    decoder = model.decoder
    torch.manual_seed(1)
    old_cells = [
        TORCH_CELLS[decoder_cell](cell.ahead_size + cell.step_size, cell.hidden_size) for cell in decoder.cells
    ]
    state = {k: v for k, v in decoder.state_dict().items() if not k.startswith("cells.")}
    for layer, old in enumerate(old_cells):
        state.update({f"cells.{layer}.{name}": value for name, value in old.state_dict().items()})
    decoder.load_state_dict(state)  # converted by the load hook

    batch = random_batch(3, 4)
    with torch.no_grad():
        memory, start = model.encode(batch.src, batch.src_lengths)
        embedded = decoder.embed(batch.tgt_in[:, 0])  # (B, E)
        _, new_state, _ = decoder.step(embedded, start, memory)
        # the same step through the old cells, with the old input order [emb; feed] or [emb; h_T]
        x = torch.cat(
            [embedded, start.feed]
            if decoder.feeds_attention
            else [embedded] + ([memory.summary] if attention == Attention.none else []),
            dim=-1,
        )
        for layer, old in enumerate(old_cells):
            if decoder_cell == Cell.lstm:
                h, c = old(x, (start.hidden[layer], start.cell[layer]))
                torch.testing.assert_close(new_state.cell[layer], c, rtol=1e-5, atol=1e-6)
            else:
                h = old(x, start.hidden[layer])
                assert new_state.cell is None
            torch.testing.assert_close(new_state.hidden[layer], h, rtol=1e-5, atol=1e-6)
            x = h


@pytest.mark.parametrize("decoder_cell", [Cell.lstm, Cell.gru])
@pytest.mark.parametrize("attention", [Attention.none, Attention.bahdanau])
def test_teacher_forced_logits_equal_step_by_step_logits(decoder_cell, attention):
    """Teacher forcing precomputes the embeddings' gate inputs for all steps; stepping computes them one by one."""
    _assert_teacher_forcing_equals_stepping(
        tiny_model(decoder_cell=decoder_cell, attention=attention, layers=2), random_batch(5, 6)
    )


def _assert_teacher_forcing_equals_stepping(model, batch) -> None:
    with torch.no_grad():
        forced = torch.log_softmax(model(batch.src, batch.src_lengths, batch.tgt_in), dim=-1)  # (B, T, V)
        memory, state = model.encode(batch.src, batch.src_lengths)
        stepped = []
        for t in range(batch.tgt_in.size(1)):
            log_probs, state, _ = model.step(batch.tgt_in[:, t], state, memory)
            stepped.append(log_probs)
    torch.testing.assert_close(torch.stack(stepped, dim=1), forced, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("decoder_cell", [Cell.lstm, Cell.gru])
@pytest.mark.parametrize(
    "attention,input_feeding", [(Attention.bahdanau, True), (Attention.bahdanau, False), (Attention.none, False)]
)
def test_every_parameter_gets_a_gradient(decoder_cell, attention, input_feeding):
    """DDP (torchrun) refuses parameters that get no gradient, e.g. an unused weight in an upper layer."""
    model = tiny_model(
        decoder_cell=decoder_cell, attention=attention, input_feeding=input_feeding, layers=2, eval_mode=False
    )
    batch = random_batch(9, 4)
    model(batch.src, batch.src_lengths, batch.tgt_in).sum().backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize("decoder_cell", [Cell.lstm, Cell.gru])
def test_checkpoints_with_empty_upper_layer_weights_still_load(decoder_cell):
    """Upper decoder layers once kept an empty weight_ahead; such checkpoints load unchanged."""
    model = tiny_model(decoder_cell=decoder_cell, layers=2)
    state = model.state_dict()
    gates = 4 if decoder_cell == Cell.lstm else 3
    old = {**state, "decoder.cells.1.weight_ahead": torch.empty(gates * model.decoder.hidden_size, 0)}
    fresh = tiny_model(seed=5, decoder_cell=decoder_cell, layers=2)
    fresh.load_state_dict(old)
    for name, value in fresh.state_dict().items():
        torch.testing.assert_close(value, state[name], msg=name)


def test_layer_norm_changes_the_model_and_adds_only_gains_and_shifts():
    plain, normalized = tiny_model(layers=2), tiny_model(layers=2, layer_norm=True)
    extra = {name for name, _ in normalized.named_parameters()} - {name for name, _ in plain.named_parameters()}
    assert extra == {
        f"decoder.cells.{layer}.{name}" for layer in (0, 1) for name in ("gate_gain", "cell_gain", "cell_bias")
    }
    batch = random_batch(2, 4)
    with torch.no_grad():
        assert not torch.allclose(
            plain(batch.src, batch.src_lengths, batch.tgt_in), normalized(batch.src, batch.src_lengths, batch.tgt_in)
        )


@pytest.mark.parametrize("decoder_cell", [Cell.lstm, Cell.gru])
@pytest.mark.parametrize("attention,input_feeding", [(Attention.bahdanau, True), (Attention.none, False)])
def test_layer_normalized_decoder_steps_gradients_and_padding(decoder_cell, attention, input_feeding):
    """With layer_norm: teacher forcing equals stepping, deferred weight gradients equal autograd's (every
    parameter gets one), and a padded sentence scores as it does alone."""
    model = tiny_model(
        decoder_cell=decoder_cell,
        attention=attention,
        input_feeding=input_feeding,
        layers=2,
        layer_norm=True,
        eval_mode=False,
    )
    for cell in model.decoder.cells:
        perturbed(cell)
    batch = random_batch(5, 6)
    plain, deferred = weight_gradients(model, batch, defer=False), weight_gradients(model, batch, defer=True)
    assert sorted(deferred) == sorted(name for name, _ in model.named_parameters())
    for name in plain:
        torch.testing.assert_close(deferred[name], plain[name], rtol=1e-4, atol=1e-6, msg=name)
    model.eval()
    _assert_teacher_forcing_equals_stepping(model, batch)
    with torch.no_grad():
        alone = make_batch([batch_src := [5, 9, 6]], [[7, 8]], [0])
        padded = make_batch([batch_src, [4, 5, 6, 7, 8, 9, 10]], [[7, 8], [9, 10, 11, 12, 13]], [0, 1])
        torch.testing.assert_close(
            model(padded.src, padded.src_lengths, padded.tgt_in)[0, :3],
            model(alone.src, alone.src_lengths, alone.tgt_in)[0],
            atol=1e-5,
            rtol=0,
        )


@pytest.mark.slow
def test_layer_normalized_decoder_overfits_reverse_task():
    rng = random.Random(0)
    src = random_ids(rng, 8, min_len=2, max_len=5, vocab=12)
    tgt = [list(reversed(s)) for s in src]
    batch = make_batch(src, tgt, range(len(src)))
    model = tiny_model(seed=0, hidden=24, embedding=16, src_vocab=12, tgt_vocab=12, layer_norm=True, eval_mode=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(250):
        optimizer.zero_grad()
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    model.eval()
    with torch.no_grad():
        assert [h.tokens for h in greedy(model, batch, SearchConfig())] == tgt


@pytest.mark.parametrize("decoder_cell", [Cell.rnn, Cell.peephole_lstm])
def test_layer_norm_with_another_decoder_cell_is_a_clear_error(decoder_cell):
    with pytest.raises(S2SError, match="layer_norm=true needs model.decoder.cell=lstm or gru"):
        tiny_model(decoder_cell=decoder_cell, layer_norm=True)


@pytest.mark.parametrize("decoder_cell", [Cell.lstm, Cell.gru])
def test_feed_dropout_feeds_back_the_vector_the_output_layer_sees(decoder_cell):
    """Training: the fed-back f_t is the dropped vector that the step returns for the output layer (so
    logits do not drop it again); without the option the fed-back f_t is whole. Decoding: no change."""
    batch = random_batch(3, 6)
    dropped, whole = (
        tiny_model(decoder_cell=decoder_cell, dropout=0.5, feed_dropout=on, eval_mode=False) for on in (True, False)
    )
    for model, expect_zeros in ((dropped, True), (whole, False)):
        memory, state = model.encode(batch.src, batch.src_lengths)
        attentional, new_state, _ = model.decoder.step(model.decoder.embed(batch.tgt_in[:, 0]), state, memory)
        assert new_state.feed is attentional
        assert bool(attentional.eq(0).any()) == expect_zeros  # tanh outputs are never exactly 0; dropped entries are
        model.decoder.dropout.p = 0.0  # the output layer adds no second mask with the option (and does without it)
        torch.testing.assert_close(model.decoder.logits(attentional), model.decoder.output(attentional))
        model.decoder.dropout.p = 0.5
    dropped.eval(), whole.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            dropped(batch.src, batch.src_lengths, batch.tgt_in), whole(batch.src, batch.src_lengths, batch.tgt_in)
        )


def test_feed_dropout_without_input_feeding_is_an_error():
    with pytest.raises(S2SError, match="feed_dropout=true needs input feeding"):
        tiny_model(input_feeding=False, feed_dropout=True)
