"""Shared helpers for the s2s unit tests: tiny models, generated id lists and small text corpora."""

from __future__ import annotations

import random

import pytest
import sentencepiece as spm
import torch
from hypothesis import strategies as st
from torch import nn

from s2s.config import (
    Attention,
    Cell,
    CorpusFormat,
    DataConfig,
    DecoderConfig,
    EncoderConfig,
    ModelConfig,
    SubwordConfig,
)
from s2s.data.batching import Batch, make_batch
from s2s.model.build import build_model
from s2s.model.seq2seq import Seq2Seq
from s2s.precision import bf16_runs
from s2s.special_tokens import EOS, PAD

FIRST_ID = 4  # ids 0-3 are PAD, UNK, BOS, EOS
VOCAB = 20
ENCODER_CELLS = [Cell.lstm, Cell.gru, Cell.rnn, Cell.peephole_lstm]
# oneDNN has no bf16 LSTM kernels on a CPU without AVX512 (an AVX2-only CPU): s2s refuses bf16 there
NEEDS_BF16 = pytest.mark.skipif(not bf16_runs(torch.device("cpu")), reason="this CPU has no bf16 kernels")


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


def mixed_model(cell: Cell, decoder_cell: Cell, attention: Attention, layers: int = 1, **kwargs) -> Seq2Seq:
    """A tiny model with encoder hidden size 8 and a decoder of another width (12), where attention allows it."""
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


def perturbed(cell: nn.Module) -> nn.Module:
    """Gains and shifts away from their initial 1 and 0, so that a test sees whether each is used."""
    torch.manual_seed(11)
    with torch.no_grad():
        for parameter in cell.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
    return cell


def weight_gradients(model: Seq2Seq, batch: Batch, defer: bool, autocast: bool = False) -> dict[str, torch.Tensor]:
    """Every parameter's gradient of the teacher-forced cross-entropy, with the decoder's per-step weight
    gradients deferred (`defer`) or left to autograd, optionally under bf16 autocast."""
    model.zero_grad(set_to_none=True)
    model.decoder.defer_step_gradients = defer
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)
    torch.nn.functional.cross_entropy(
        logits.flatten(0, 1).float(), batch.tgt_out.flatten(), ignore_index=PAD
    ).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


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


# ---------------------------------------------------------------- small text corpora

WORDS = "der die das Haus Hund Katze läuft schnell langsam groß klein rot blau grün heute morgen".split()


def _sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def write_corpus(directory, lines: int = 300, seed: int = 0) -> tuple[list[str], list[str]]:
    """train.de / train.en with some empty and some long lines, and a small valid split."""
    rng = random.Random(seed)
    src, tgt = [], []
    for number in range(lines):
        s, t = _sentence(rng, 1, 8), _sentence(rng, 1, 8)
        if number % 37 == 5:
            s = ""  # empty source
        if number % 41 == 7:
            t = "   "  # a target that encodes to nothing
        if number % 23 == 11:
            t = _sentence(rng, 40, 60)  # over-long target
        if number % 29 == 13:
            s = _sentence(rng, 40, 60)  # over-long source
        src.append(s)
        tgt.append(t)
    (directory / "train.de").write_text("\n".join(src) + "\n", encoding="utf-8")
    (directory / "train.en").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    (directory / "valid.de").write_text("das Haus\nder Hund läuft\n", encoding="utf-8")
    (directory / "valid.en").write_text("die Katze\nrot und blau\n", encoding="utf-8")
    return src, tgt


def corpus_config(directory, **subword) -> DataConfig:
    """The data config of the corpus `write_corpus` wrote (de -> en, 60 pieces); kwargs go to SubwordConfig."""
    return DataConfig(
        name="t",
        format=CorpusFormat.text,
        dir=str(directory),
        src_lang="de",
        tgt_lang="en",
        max_len=30,
        max_tokens=200,
        subword=SubwordConfig(vocab_size=60, **subword),
    )


# ---------------------------------------------------------------- hostile text

SEPARATORS = ["\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\x00", "\x7f", "\t", " "]
# any character (lone surrogates included: st.text can make them), with line breakers and controls made likely
CHARACTERS = st.one_of(st.characters(exclude_characters="\n"), st.sampled_from(SEPARATORS))


def train_tokenizer(directory, name: str, vocab: int) -> spm.SentencePieceProcessor:
    """A unigram sentencepiece model of about `vocab` pieces trained on 300 lines of WORDS."""
    rng = random.Random(0)
    text = directory / f"{name}.txt"
    text.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(6)) for _ in range(300)), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(directory / name), vocab_size=vocab, minloglevel=2, hard_vocab_limit=False
    )
    return spm.SentencePieceProcessor(model_file=str(directory / f"{name}.model"))
