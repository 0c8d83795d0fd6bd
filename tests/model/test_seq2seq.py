"""The encoder-decoder as a whole (s2s.model.seq2seq): shapes, padding invariance, scheduled sampling, word
dropout, shared embeddings, learning."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from torch import nn

from s2s.config import Attention, Cell, ModelConfig, SearchConfig
from s2s.data.batching import make_batch
from s2s.decoding.search import greedy
from s2s.model.int8 import int8_copy
from s2s.model.seq2seq import Seq2Seq, count_parameters
from s2s.special_tokens import PAD
from tests.helpers import ENCODER_CELLS, VOCAB, mixed_model, random_batch, random_ids, tiny_config, tiny_model

DECODER_CELLS = [Cell.lstm, Cell.gru]
ATTENTIONS = [Attention.none, Attention.bahdanau, Attention.luong_general, Attention.luong_dot]


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize(
    "cell,decoder_cell,attention", list(itertools.product(ENCODER_CELLS, DECODER_CELLS, ATTENTIONS))
)
def test_output_shapes(cell, decoder_cell, attention, layers):
    model = mixed_model(cell, decoder_cell, attention, layers=layers, tgt_vocab=VOCAB + 3)
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


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("attention", [Attention.bahdanau, Attention.none])
@pytest.mark.parametrize("cell", ENCODER_CELLS)
def test_padding_invariance(cell, attention, layers):
    model = mixed_model(cell, Cell.lstm, attention, layers=layers)
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


@pytest.mark.slow
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
