"""Shared helpers for the s2s unit tests: tiny models and generated id lists."""

from __future__ import annotations

import random

import torch

from s2s.config import Attention, Cell, DecoderConfig, EncoderConfig, ModelConfig
from s2s.data.batching import Batch, make_batch
from s2s.model.build import build_model
from s2s.model.seq2seq import Seq2Seq
from s2s.special_tokens import EOS, PAD

FIRST_ID = 4  # ids 0-3 are PAD, UNK, BOS, EOS
VOCAB = 20


def tiny_config(
    cell: Cell = Cell.lstm,
    decoder_cell: Cell = Cell.lstm,
    attention: Attention = Attention.bahdanau,
    hidden: int = 16,
    decoder_hidden: int | None = None,
    embedding: int = 12,
    layers: int = 1,
    dropout: float = 0.0,
    tie: bool = False,
    input_feeding: bool = True,
    layer_norm: bool = False,
    feed_dropout: bool = False,
) -> ModelConfig:
    return ModelConfig(
        embedding_size=embedding,
        embedding_dropout=dropout,
        tie_target_embeddings=tie,
        encoder=EncoderConfig(cell=cell, hidden_size=hidden, num_layers=layers, dropout=dropout),
        decoder=DecoderConfig(
            cell=decoder_cell,
            hidden_size=decoder_hidden if decoder_hidden is not None else hidden,
            num_layers=layers,
            dropout=dropout,
            attention=attention,
            input_feeding=input_feeding,
            layer_norm=layer_norm,
            feed_dropout=feed_dropout,
        ),
    )


def tiny_model(
    seed: int = 0, src_vocab: int = VOCAB, tgt_vocab: int = VOCAB, eval_mode: bool = True, **kwargs
) -> Seq2Seq:
    """A seeded tiny Seq2Seq (eval mode by default); kwargs go to `tiny_config`."""
    torch.manual_seed(seed)
    model = build_model(tiny_config(**kwargs), src_vocab, tgt_vocab, joint_vocabulary=src_vocab == tgt_vocab)
    return model.eval() if eval_mode else model


def random_ids(
    rng: random.Random, count: int, min_len: int = 1, max_len: int = 8, vocab: int = VOCAB
) -> list[list[int]]:
    """`count` id lists of random length in [min_len, max_len], ids in [4, vocab)."""
    return [[rng.randrange(FIRST_ID, vocab) for _ in range(rng.randint(min_len, max_len))] for _ in range(count)]


def random_batch(seed: int, count: int, with_target: bool = True, **kwargs) -> Batch:
    rng = random.Random(seed)
    src = random_ids(rng, count, **kwargs)
    tgt = random_ids(rng, count, **kwargs) if with_target else None
    return make_batch(src, tgt, range(count))


def sequence_log_prob(model: Seq2Seq, src: list[int], out: list[int]) -> float:
    """log p(out + EOS | src) by teacher forcing (the model should be in eval mode)."""
    batch = make_batch([src], [out], [0])
    with torch.no_grad():
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)  # (1, T, V)
        log_probs = torch.log_softmax(logits, dim=-1)
        picked = log_probs.gather(2, batch.tgt_out.unsqueeze(2)).squeeze(2)  # (1, T)
    assert int(batch.tgt_out[0, -1]) == EOS
    return float(picked[batch.tgt_out.ne(PAD)].sum())


def train_briefly(model: Seq2Seq, batch: Batch, steps: int, lr: float = 1e-2) -> Seq2Seq:
    """A few Adam steps of teacher-forced cross-entropy; returns the model in eval mode."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD)
        loss.backward()
        optimizer.step()
    return model.eval()


def half_trained_model(seed: int = 0, steps: int = 40, **kwargs) -> Seq2Seq:
    """A tiny model trained a little on a copy task: outputs of varied lengths that end in EOS,
    but still uncertain enough for beam search to matter."""
    rng = random.Random(seed)
    src = random_ids(rng, 16, min_len=2, max_len=7)
    model = tiny_model(seed=seed, eval_mode=False, **kwargs)
    return train_briefly(model, make_batch(src, src, range(len(src))), steps)
