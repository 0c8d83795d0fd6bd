"""Bidirectional multi-layer RNN encoder over packed (padding-free) sequences, or on a CPU over
right-aligned padded ones in oneDNN's fused kernels, with the same results (s2s.model.aligned_rnn).

Shapes: B batch, S source length, E embedding size, H hidden size per direction,
L layers. Outputs concatenate the two directions, so their width is C = 2H.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from s2s.config import Cell, EncoderConfig
from s2s.model.aligned_rnn import aligned_bidirectional, fused_on_padding
from s2s.model.cells import PeepholeLSTMCell, has_memory_cell
from s2s.model.dropout import Dropout
from s2s.special_tokens import PAD


@dataclass
class EncoderOutput:
    states: torch.Tensor  # (B, S, C) top-layer outputs, zero at padding
    mask: torch.Tensor  # (B, S) True at real tokens
    final_hidden: torch.Tensor  # (L, B, C) last states h_T of both directions, per layer
    final_cell: torch.Tensor | None  # (L, B, C) LSTM cell states, else None


class Encoder(nn.Module):
    def __init__(
        self, cfg: EncoderConfig, vocab_size: int, embedding_size: int, embedding_dropout: float, word_dropout: float
    ):
        super().__init__()
        self.cell = cfg.cell
        self.hidden_size = cfg.hidden_size
        self.num_layers = cfg.num_layers
        self.output_size = 2 * cfg.hidden_size
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=PAD)
        self.embedding_dropout = Dropout(embedding_dropout)
        self.word_dropout = Dropout(word_dropout, whole_vectors=True)
        self.output_dropout = Dropout(cfg.dropout)
        between = cfg.dropout if cfg.num_layers > 1 else 0.0
        self.between_layers = Dropout(
            between
        )  # between layers on the fused path (nn.LSTM drops them itself when packed)
        match cfg.cell:
            case Cell.lstm:
                self.rnn = nn.LSTM(
                    embedding_size,
                    cfg.hidden_size,
                    cfg.num_layers,
                    batch_first=True,
                    bidirectional=True,
                    dropout=between,
                )
            case Cell.gru:
                self.rnn = nn.GRU(
                    embedding_size,
                    cfg.hidden_size,
                    cfg.num_layers,
                    batch_first=True,
                    bidirectional=True,
                    dropout=between,
                )
            case Cell.rnn:
                self.rnn = nn.RNN(
                    embedding_size,
                    cfg.hidden_size,
                    cfg.num_layers,
                    batch_first=True,
                    bidirectional=True,
                    dropout=between,
                )
            case Cell.peephole_lstm:
                self.rnn = BiPeepholeLSTM(embedding_size, cfg.hidden_size, cfg.num_layers, between)

    def forward(self, src: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """src (B, S) ids, lengths (B,) on the CPU -> EncoderOutput."""
        batch, max_len = src.shape
        embedded = self.embedding_dropout(self.word_dropout(self.embedding(src)))  # (B, S, E)
        mask = src.ne(PAD)  # (B, S)
        if isinstance(self.rnn, BiPeepholeLSTM):
            states, (h_n, c_n) = self.rnn(embedded, mask)  # (B, S, C), (L*2, B, H) x2
        elif fused_on_padding(self.rnn, src.device):  # CPU: oneDNN's fused kernels, which packing would turn off
            states, h_n, c_n = aligned_bidirectional(
                self.rnn, embedded, lengths, self.between_layers
            )  # (B, S, C), (L*2, B, H) x2
        else:
            packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
            packed_states, final = self.rnn(packed)
            states, _ = pad_packed_sequence(packed_states, batch_first=True, total_length=max_len)  # (B, S, C)
            h_n, c_n = final if has_memory_cell(self.cell) else (final, None)
        return EncoderOutput(
            states=self.output_dropout(states),
            mask=mask,
            final_hidden=self._join_directions(h_n, batch),
            final_cell=self._join_directions(c_n, batch) if c_n is not None else None,
        )

    def _join_directions(self, final: torch.Tensor, batch: int) -> torch.Tensor:
        # (L*2, B, H) -> (L, 2, B, H) -> (L, B, 2H)
        per_layer = final.view(self.num_layers, 2, batch, self.hidden_size)
        return torch.cat([per_layer[:, 0], per_layer[:, 1]], dim=-1)


class BiPeepholeLSTM(nn.Module):
    """A bidirectional stack of peephole LSTMs run step by step (slower than cuDNN-style LSTMs).

    Padding is handled with the mask: a finished sentence keeps its state, so the
    final state is the one at its last real token, and the backward direction
    reads each sentence reversed within its own length.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float):
        super().__init__()
        self.hidden_size = hidden_size
        self.dropout = Dropout(dropout)
        self.cells = nn.ModuleList(
            PeepholeLSTMCell(input_size if layer == 0 else 2 * hidden_size, hidden_size)
            for layer in range(num_layers)
            for _direction in range(2)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x (B, S, I), mask (B, S) -> states (B, S, 2H), (h_n, c_n) each (L*2, B, H)."""
        reverse = _reverse_index(mask)  # (B, S)
        finals_h, finals_c = [], []
        for layer in range(len(self.cells) // 2):
            if layer > 0:
                x = self.dropout(x)
            forward_out, fh, fc = self._run(self.cells[2 * layer], x, mask)
            backward_rev, bh, bc = self._run(self.cells[2 * layer + 1], _gather_time(x, reverse), mask)
            x = torch.cat([forward_out, _gather_time(backward_rev, reverse)], dim=-1)  # (B, S, 2H)
            finals_h += [fh, bh]
            finals_c += [fc, bc]
        return x, (torch.stack(finals_h), torch.stack(finals_c))

    def _run(self, cell: PeepholeLSTMCell, x: torch.Tensor, mask: torch.Tensor):
        batch, length, _ = x.shape
        h = x.new_zeros(batch, self.hidden_size)  # (B, H)
        c = x.new_zeros(batch, self.hidden_size)
        outputs = []
        for t in range(length):
            h_new, c_new = cell(x[:, t], (h, c))
            keep = mask[:, t].unsqueeze(1)  # (B, 1)
            h = torch.where(keep, h_new, h)
            c = torch.where(keep, c_new, c)
            outputs.append(h_new * keep)
        return torch.stack(outputs, dim=1), h, c  # (B, S, H), (B, H), (B, H)


def _reverse_index(mask: torch.Tensor) -> torch.Tensor:
    """(B, S) time index that reverses each sequence within its length and leaves padding in place."""
    lengths = mask.sum(dim=1, keepdim=True)  # (B, 1)
    positions = torch.arange(mask.size(1), device=mask.device).unsqueeze(0)  # (1, S)
    return torch.where(positions < lengths, lengths - 1 - positions, positions)


def _gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, S, D) reordered along time by index (B, S)."""
    return x.gather(1, index.unsqueeze(-1).expand_as(x))
