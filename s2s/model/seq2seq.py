"""The encoder-decoder: encode the source once, then decode teacher-forced or step by step.

Shapes: B batch, S source length, T target length, V target vocabulary.
"""

from __future__ import annotations

import torch
from torch import nn

from s2s.config import ModelConfig
from s2s.model.decoder import Decoder, DecoderState, Memory
from s2s.model.encoder import Encoder


class Seq2Seq(nn.Module):
    def __init__(self, cfg: ModelConfig, src_vocab_size: int, tgt_vocab_size: int):
        super().__init__()
        self.encoder = Encoder(cfg.encoder, src_vocab_size, cfg.embedding_size, cfg.embedding_dropout, cfg.word_dropout)
        self.decoder = Decoder(
            cfg.decoder,
            tgt_vocab_size,
            cfg.embedding_size,
            cfg.embedding_dropout,
            cfg.word_dropout,
            encoder_size=self.encoder.output_size,
            tie_embeddings=cfg.tie_target_embeddings,
            embedding=self.encoder.embedding
            if cfg.share_embeddings
            else None,  # one matrix: a piece has one vector on both sides
        )

    @property
    def has_attention(self) -> bool:
        return self.decoder.attention is not None

    @property
    def target_vocab_size(self) -> int:
        return self.decoder.output.out_features

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[Memory, DecoderState]:
        """src (B, S), src_lengths (B,) -> what the decoder reads, and its initial state."""
        encoded = self.encoder(src, src_lengths)
        return self.decoder.memory(encoded), self.decoder.init_state(encoded)

    def forward(
        self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor, teacher_forcing: float = 1.0
    ) -> torch.Tensor:
        """Teacher-forced scores: src (B, S), tgt_in (B, T) -> logits (B, T, V)."""
        memory, state = self.encode(src, src_lengths)
        return self.decoder(tgt_in, state, memory, teacher_forcing)

    def log_probs(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced log-probabilities in fp32: src (B, S), tgt_in (B, T) -> (B, T, V)."""
        return torch.log_softmax(self(src, src_lengths, tgt_in).float(), dim=-1)

    def step(
        self, tokens: torch.Tensor, state: DecoderState, memory: Memory
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]:
        """One decoding step: previous tokens (B,) -> log-probabilities (B, V), new state, attention (B, S)."""
        attentional, state, weights = self.decoder.step(self.decoder.embed(tokens), state, memory)
        return (
            torch.log_softmax(self.decoder.logits(attentional).float(), dim=-1),
            state,
            weights,
        )  # fp32 scores in any precision


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
