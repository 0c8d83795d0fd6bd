"""Tests for the encoder, attention, cells and decoder (s2s.model)."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from helpers import VOCAB, random_batch, random_ids, tiny_config, tiny_model
from torch import nn

from s2s.config import Attention, Cell, ModelConfig, SearchConfig
from s2s.data.batching import make_batch
from s2s.decoding.search import greedy
from s2s.errors import S2SError
from s2s.model.attention import attend, make_attention
from s2s.model.build import build_model
from s2s.model.cells import PeepholeLSTMCell, SplitInputGRUCell, SplitInputLSTMCell
from s2s.model.int8 import int8_copy
from s2s.model.seq2seq import Seq2Seq, count_parameters
from s2s.precision import bf16_runs
from s2s.special_tokens import PAD

# oneDNN has no bf16 LSTM kernels on a CPU without AVX512 (an AVX2-only CPU): s2s refuses bf16 there
NEEDS_BF16 = pytest.mark.skipif(not bf16_runs(torch.device("cpu")), reason="this CPU has no bf16 kernels")

ENCODER_CELLS = [Cell.lstm, Cell.gru, Cell.rnn, Cell.peephole_lstm]
DECODER_CELLS = [Cell.lstm, Cell.gru]
ATTENTIONS = [Attention.none, Attention.bahdanau, Attention.luong_general, Attention.luong_dot]


def _model(cell, decoder_cell, attention, layers=1, **kwargs):
    hidden = 8
    # luong_dot needs the decoder as wide as the two encoder directions together
    decoder_hidden = 2 * hidden if attention == Attention.luong_dot else 12
    return tiny_model(
        cell=cell,
        decoder_cell=decoder_cell,
        attention=attention,
        hidden=hidden,
        decoder_hidden=decoder_hidden,
        layers=layers,
        **kwargs,
    )


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize(
    "cell,decoder_cell,attention", list(itertools.product(ENCODER_CELLS, DECODER_CELLS, ATTENTIONS))
)
def test_output_shapes(cell, decoder_cell, attention, layers):
    model = _model(cell, decoder_cell, attention, layers=layers, tgt_vocab=VOCAB + 3)
    batch = make_batch([[4, 5, 6, 7, 8], [9, 10], [11, 12, 13]], [[5, 6], [7, 8, 9, 10], [11]], range(3))
    B, S = batch.src.shape
    T = batch.tgt_in.size(1)
    logits = model(batch.src, batch.src_lengths, batch.tgt_in)
    assert logits.shape == (B, T, VOCAB + 3)
    assert torch.isfinite(logits).all()

    encoded = model.encoder(batch.src, batch.src_lengths)
    assert encoded.states.shape == (B, S, 16)
    assert encoded.final_hidden.shape == (layers, B, 16)
    assert encoded.mask.tolist() == batch.src.ne(PAD).tolist()
    if cell in (Cell.lstm, Cell.peephole_lstm):
        assert encoded.final_cell.shape == (layers, B, 16)
    else:
        assert encoded.final_cell is None
    # encoder states are zero at padding
    assert (encoded.states[~encoded.mask] == 0).all()
    assert (encoded.states[encoded.mask] != 0).any(dim=-1).all()

    memory, state = model.encode(batch.src, batch.src_lengths)
    H = model.decoder.hidden_size
    assert state.hidden.shape == (layers, B, H)
    assert (state.cell is not None) == (decoder_cell == Cell.lstm)
    log_probs, new_state, weights = model.step(torch.full((B,), 2), state, memory)
    assert log_probs.shape == (B, VOCAB + 3)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(B), atol=1e-5)
    assert new_state.hidden.shape == (layers, B, H)
    if attention == Attention.none:
        assert weights is None
    else:
        assert weights.shape == (B, S)


def test_rnn_decoder_cell_works():
    model = tiny_model(decoder_cell=Cell.rnn, attention=Attention.bahdanau)
    batch = random_batch(1, 2)
    assert model(batch.src, batch.src_lengths, batch.tgt_in).shape == (*batch.tgt_in.shape, VOCAB)


# ---------------------------------------------------------------- padding invariance


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("attention", [Attention.bahdanau, Attention.none])
@pytest.mark.parametrize("cell", ENCODER_CELLS)
def test_padding_invariance(cell, attention, layers):
    model = _model(cell, Cell.lstm, attention, layers=layers)
    rng = random.Random(3)
    short_src, short_tgt = [5, 9, 6], [7, 8]
    others_src = random_ids(rng, 3, min_len=6, max_len=9)
    others_tgt = random_ids(rng, 3, min_len=5, max_len=8)
    with torch.no_grad():
        alone = make_batch([short_src], [short_tgt], [0])
        logits_alone = model(alone.src, alone.src_lengths, alone.tgt_in)[0]  # (T, V)
        # the short sentence sits between longer ones, so both its source and target are padded
        batch = make_batch(
            [others_src[0], short_src] + others_src[1:], [others_tgt[0], short_tgt] + others_tgt[1:], range(4)
        )
        assert batch.src.size(1) > alone.src.size(1) and batch.tgt_in.size(1) > alone.tgt_in.size(1)
        logits_batch = model(batch.src, batch.src_lengths, batch.tgt_in)[1, : len(short_tgt) + 1]
    torch.testing.assert_close(logits_batch, logits_alone, atol=1e-5, rtol=0)


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


# ---------------------------------------------------------------- attention


@pytest.mark.parametrize("kind", [Attention.bahdanau, Attention.luong_general, Attention.luong_dot])
def test_attend_masks_padding_and_normalizes(kind):
    torch.manual_seed(0)
    module = make_attention(kind, 10, 10)
    values = torch.randn(3, 6, 10)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    values = values * mask.unsqueeze(-1)
    keys = module.prepare_keys(values)
    context, weights = attend(module, torch.randn(3, 10), keys, values, mask)
    assert context.shape == (3, 10) and weights.shape == (3, 6)
    assert (weights[~mask] == 0).all()
    assert (weights[mask] > 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3))
    assert weights[2, 0].item() == pytest.approx(1.0)
    torch.testing.assert_close(context[2], values[2, 0])


@pytest.mark.parametrize("kind", [Attention.bahdanau, Attention.luong_general, Attention.luong_dot])
def test_attend_with_several_queries_per_sentence_equals_copied_keys(kind):
    """Beam search's G queries per sentence share that sentence's keys, values and mask: the same as
    copying them to every query row, one query per row."""
    torch.manual_seed(2)
    module = make_attention(kind, 8, 8)
    values = torch.randn(3, 5, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    keys, query = module.prepare_keys(values), torch.randn(3 * 4, 8)  # 4 queries per sentence, in consecutive rows
    context, weights = attend(module, query, keys, values, mask)
    rows = torch.arange(3).repeat_interleave(4)
    copied_context, copied_weights = attend(module, query, keys[rows], values[rows], mask[rows])
    assert context.shape == (12, 8) and weights.shape == (12, 5)
    torch.testing.assert_close(weights, copied_weights)
    torch.testing.assert_close(context, copied_context)
    with pytest.raises(ValueError, match="do not split into groups"):
        attend(module, query[:11], keys, values, mask)


@pytest.mark.parametrize("kind", [Attention.bahdanau, Attention.luong_general, Attention.luong_dot])
def test_attend_ignores_garbage_at_padding(kind):
    # what sits at a padded position (keys and values) must not change the result
    torch.manual_seed(1)
    module = make_attention(kind, 8, 8)
    values = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    query = torch.randn(2, 8)
    c1, w1 = attend(module, query, module.prepare_keys(values), values, mask)
    noisy = values.clone()
    noisy[~mask] = 1e3 * torch.randn(int((~mask).sum()), 8)
    c2, w2 = attend(module, query, module.prepare_keys(noisy), noisy, mask)
    torch.testing.assert_close(w1, w2)
    torch.testing.assert_close(c1, c2)


@pytest.mark.parametrize("attention", [Attention.bahdanau, Attention.luong_general, Attention.luong_dot])
def test_model_step_attention_weights(attention):
    model = _model(Cell.lstm, Cell.gru, attention)
    batch = random_batch(4, 5, max_len=7)
    memory, state = model.encode(batch.src, batch.src_lengths)
    tokens = torch.full((5,), 2)
    for _ in range(3):
        log_probs, state, weights = model.step(tokens, state, memory)
        mask = batch.src.ne(PAD)
        assert (weights[~mask] == 0).all()
        torch.testing.assert_close(weights.sum(-1), torch.ones(5))
        tokens = log_probs.argmax(-1)


def test_luong_dot_size_mismatch_raises():
    with pytest.raises(S2SError, match="luong_dot"):
        tiny_model(attention=Attention.luong_dot, hidden=8, decoder_hidden=12)
    # the matching size builds
    tiny_model(attention=Attention.luong_dot, hidden=8, decoder_hidden=16)


# ---------------------------------------------------------------- tied embeddings


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


# ---------------------------------------------------------------- peephole cell


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


# ---------------------------------------------------------------- scheduled sampling


def test_scheduled_sampling_shape_and_effect():
    model = tiny_model(seed=3, eval_mode=False)  # dropout 0, but train mode
    batch = random_batch(6, 6, min_len=5, max_len=9)
    torch.manual_seed(0)
    full = model(batch.src, batch.src_lengths, batch.tgt_in, 1.0)
    torch.manual_seed(0)
    mixed = model(batch.src, batch.src_lengths, batch.tgt_in, 0.5)
    assert mixed.shape == full.shape
    assert not torch.allclose(mixed, full)
    # the first step is always fed BOS, so it does not change
    torch.testing.assert_close(mixed[:, 0], full[:, 0])
    # reproducible with the same seed
    torch.manual_seed(0)
    torch.testing.assert_close(model(batch.src, batch.src_lengths, batch.tgt_in, 0.5), mixed)
    # a ratio just under 1 draws gold tokens at every step here: same as teacher forcing
    torch.manual_seed(0)
    torch.testing.assert_close(model(batch.src, batch.src_lengths, batch.tgt_in, 0.9999999), full, atol=1e-5, rtol=0)
    # and gradients flow
    mixed.sum().backward()
    assert all(p.grad is not None for p in model.decoder.output.parameters())


# ---------------------------------------------------------------- overfitting


@pytest.mark.parametrize("cell,attention", [(Cell.lstm, Attention.bahdanau), (Cell.gru, Attention.luong_general)])
def test_overfits_reverse_task(cell, attention):
    rng = random.Random(0)
    src = random_ids(rng, 8, min_len=2, max_len=5, vocab=12)
    tgt = [list(reversed(s)) for s in src]
    batch = make_batch(src, tgt, range(len(src)))
    model = tiny_model(
        seed=0,
        cell=cell,
        decoder_cell=cell,
        attention=attention,
        hidden=24,
        embedding=16,
        src_vocab=12,
        tgt_vocab=12,
        eval_mode=False,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss(ignore_index=PAD)
    for _ in range(250):
        optimizer.zero_grad()
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        loss = loss_fn(logits.reshape(-1, logits.size(-1)), batch.tgt_out.reshape(-1))
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    model.eval()
    with torch.no_grad():
        hypotheses = greedy(model, batch, SearchConfig())
    assert [h.tokens for h in hypotheses] == tgt


# ---------------------------------------------------------------- the split-input LSTM and GRU decoder cells

TORCH_CELLS = {Cell.lstm: nn.LSTMCell, Cell.gru: nn.GRUCell}


@pytest.mark.parametrize("decoder_cell", [Cell.lstm, Cell.gru])
@pytest.mark.parametrize(
    "attention,input_feeding", [(Attention.bahdanau, True), (Attention.bahdanau, False), (Attention.none, False)]
)
@pytest.mark.parametrize("layers", [1, 2])
def test_decoder_loads_torch_cell_weights_and_computes_the_same(decoder_cell, attention, input_feeding, layers):
    """A decoder checkpoint with nn.LSTMCell / nn.GRUCell layers loads into the split-input cells and gives the same steps."""
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


def _gradients(model, batch, defer: bool, autocast: bool = False) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    model.decoder.defer_step_gradients = defer
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)
    torch.nn.functional.cross_entropy(
        logits.flatten(0, 1).float(), batch.tgt_out.flatten(), ignore_index=PAD
    ).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


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
    plain, deferred = _gradients(model, batch, defer=False), _gradients(model, batch, defer=True)
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
        _gradients(model, batch, defer=False, autocast=True),
        _gradients(model, batch, defer=True, autocast=True),
    )
    for name in plain:
        assert deferred[name].dtype == torch.float32
        torch.testing.assert_close(deferred[name], plain[name], rtol=0.05, atol=2e-3, msg=name)


def test_word_dropout_zeroes_whole_token_embeddings_in_training_only():
    torch.manual_seed(0)
    cfg = ModelConfig(embedding_size=16, embedding_dropout=0.0, word_dropout=0.5)
    model = Seq2Seq(cfg, src_vocab_size=30, tgt_vocab_size=30)
    tokens = torch.randint(4, 30, (8, 20))
    for embed in (model.decoder.embed, lambda t: model.encoder.word_dropout(model.encoder.embedding(t))):
        model.train()
        dropped = (embed(tokens) == 0).all(dim=-1)  # (8, 20)
        assert 0.3 < dropped.float().mean().item() < 0.7
        model.eval()
        assert not (embed(tokens) == 0).all(dim=-1).any()


# ---------------------------------------------------------------- layer-normalized decoder cells


def _normalized(x: torch.Tensor, gain: torch.Tensor, shift: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Layer normalization written out: x (B, H) over its last dimension."""
    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * gain + shift


def _perturbed(cell: nn.Module) -> nn.Module:
    """Gains and shifts away from their initial 1 and 0, so that a test sees whether each is used."""
    torch.manual_seed(11)
    with torch.no_grad():
        for parameter in cell.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
    return cell


def test_layer_normalized_lstm_cell_matches_the_formula():
    """gates_k = LN(W_ahead a + W_step [p; h])_k * gain_k + bias_k per gate k; h = o * tanh(LN(c))."""
    hidden = 6
    cell = _perturbed(SplitInputLSTMCell(5, 4, hidden, layer_norm=True))
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
    upper = _perturbed(SplitInputLSTMCell(0, 4, hidden, layer_norm=True))
    with torch.no_grad():
        _, upper_c = upper(step, (h, c))
        summed = torch.cat([step, h], dim=-1) @ upper.weight_step.T
        gain, shift = upper.gate_gain.view(4, hidden), upper.bias.view(4, hidden)
        i, f, g, _ = (_normalized(summed[:, k * hidden : (k + 1) * hidden], gain[k], shift[k]) for k in range(4))
    torch.testing.assert_close(upper_c, torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g), rtol=1e-5, atol=1e-6)


def test_layer_normalized_gru_cell_matches_the_formula():
    """The input side and the hidden side are normalized per gate separately; the reset gate scales the hidden side's candidate."""
    hidden = 6
    cell = _perturbed(SplitInputGRUCell(5, 4, hidden, layer_norm=True))
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
        _perturbed(cell)
    batch = random_batch(5, 6)
    plain, deferred = _gradients(model, batch, defer=False), _gradients(model, batch, defer=True)
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


def test_feed_dropout_deferred_gradients_equal_autograds():
    """Under the same dropout masks (same seed), deferred per-step weight gradients equal autograd's."""
    model = tiny_model(dropout=0.3, layers=2, feed_dropout=True, eval_mode=False)
    batch = random_batch(7, 5)
    torch.manual_seed(11)
    plain = _gradients(model, batch, defer=False)
    torch.manual_seed(11)
    deferred = _gradients(model, batch, defer=True)
    assert plain.keys() == deferred.keys()
    for name in plain:
        torch.testing.assert_close(deferred[name], plain[name], rtol=1e-4, atol=1e-6, msg=name)


def test_feed_dropout_without_input_feeding_is_an_error():
    with pytest.raises(S2SError, match="feed_dropout=true needs input feeding"):
        tiny_model(input_feeding=False, feed_dropout=True)


def _shared(seed: int = 0, **kwargs) -> Seq2Seq:
    torch.manual_seed(seed)
    cfg = tiny_config(**kwargs)
    cfg.share_embeddings = True
    return Seq2Seq(cfg, VOCAB, VOCAB)


def test_shared_embeddings_are_one_matrix_whose_gradient_sums_both_sides():
    shared, separate = _shared(dropout=0.0).train(), tiny_model(eval_mode=False)
    assert shared.decoder.embedding.weight is shared.encoder.embedding.weight
    assert count_parameters(separate) - count_parameters(shared) == VOCAB * shared.encoder.embedding.embedding_dim
    separate.load_state_dict(shared.state_dict())  # the same weights, the two sides' copies now free to differ
    batch = random_batch(4, 5)
    for model in (shared, separate):
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD).backward()
    both_sides = separate.encoder.embedding.weight.grad + separate.decoder.embedding.weight.grad
    torch.testing.assert_close(shared.encoder.embedding.weight.grad, both_sides)
    assert (
        separate.encoder.embedding.weight.grad.abs().sum() > 0
        and separate.decoder.embedding.weight.grad.abs().sum() > 0
    )


def test_shared_embeddings_stay_shared_through_a_state_dict_and_int8():
    trained, fresh = _shared(seed=0), _shared(seed=1)
    fresh.load_state_dict(trained.state_dict())
    assert fresh.decoder.embedding.weight is fresh.encoder.embedding.weight
    batch = random_batch(6, 3)
    with torch.no_grad():
        torch.testing.assert_close(
            fresh(batch.src, batch.src_lengths, batch.tgt_in), trained(batch.src, batch.src_lengths, batch.tgt_in)
        )
    copy = int8_copy(trained)
    assert copy.decoder.embedding.weight is copy.encoder.embedding.weight


def test_shared_and_tied_embeddings_are_one_matrix_three_ways():
    model = _shared(tie=True)
    assert model.decoder.output.weight is model.decoder.embedding.weight is model.encoder.embedding.weight
    assert (
        count_parameters(tiny_model(tie=True)) - count_parameters(model)
        == VOCAB * model.encoder.embedding.embedding_dim
    )


def test_shared_embeddings_need_equal_vocabularies():
    cfg = tiny_config()
    cfg.share_embeddings = True
    with pytest.raises(S2SError, match="needs one vocabulary for both sides, got 40 and 30 pieces"):
        build_model(cfg, 40, 30, joint_vocabulary=True)
    with pytest.raises(S2SError, match=r"needs one joint vocabulary \(data.subword.joint=true\)"):
        build_model(cfg, 40, 40, joint_vocabulary=False)  # equal sizes are not enough


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
