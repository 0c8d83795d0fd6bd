"""Autoregressive RNN decoder with a bridge from the encoder's final states and optional attention.

Shapes: B batch, S source length, T target length, E embedding size, C encoder
state size (2 x encoder hidden), H decoder hidden size, L decoder layers,
F attentional-vector size (E when embeddings are tied, else H), V target vocabulary.

LSTM and GRU decoders use split-input cells (`SplitInputLSTMCell`, `SplitInputGRUCell`):
the inputs known in advance (embeddings under teacher forcing, and h_T without attention)
get their gate inputs for all steps in one matrix multiply; inside the loop only the
fed-back vector and h are multiplied (the LSTM in one multiply, the GRU in two).

One step (Luong-style, with input feeding):
    x_t  = [emb(y_{t-1}); f_{t-1}]            (attention)   or [emb(y_{t-1}); h_T] (none)
    s_t  = RNN(x_t, s_{t-1})
    c_t  = attention(s_t, encoder states)     (attention)   or h_T                 (none)
    f_t  = tanh(W_c [s_t; c_t])               the attentional vector
    p(y_t) = softmax(W_o dropout(f_t))

With `feed_dropout`, f_t is dropped once and that same vector is both the output layer's
input and the next step's fed-back input (as OpenNMT-py's input-feeding decoder does), so
the recurrent path through input feeding is regularized too; otherwise only the output
layer sees the dropped f_t and the next step gets it whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from s2s.config import Attention, Cell, DecoderConfig
from s2s.model.attention import attend, make_attention
from s2s.model.cells import SplitInputGRUCell, SplitInputLSTMCell, has_memory_cell, make_cell
from s2s.model.dropout import Dropout
from s2s.model.encoder import EncoderOutput
from s2s.model.step_weights import StepGradients, step_linear
from s2s.special_tokens import PAD


@dataclass
class Memory:
    """What the decoder reads from the encoder, fixed for the whole decoding.

    Values, keys and mask are per sentence; summary is per decoder row, of which beam search
    has G per sentence (its hypotheses, in consecutive rows), other decoding and training one.
    """

    values: torch.Tensor  # (B, S, C) encoder states
    keys: torch.Tensor | None  # (B, S, A) attention keys, projected once; None without attention
    mask: torch.Tensor  # (B, S) True at real tokens
    summary: torch.Tensor  # (B*G, C) top-layer h_T of both directions, one row per decoder row

    def select(self, sentences: torch.Tensor, rows: torch.Tensor | None = None) -> "Memory":
        """Sentences `sentences` and decoder rows `rows` (default: the same, for one row per
        sentence): dropping finished sentences."""
        keys = self.keys.index_select(0, sentences) if self.keys is not None else None
        summary = self.summary.index_select(0, rows if rows is not None else sentences)
        return Memory(self.values.index_select(0, sentences), keys, self.mask.index_select(0, sentences), summary)

    def repeat_rows(self, group: int) -> "Memory":
        """`group` decoder rows per sentence (beam search's hypotheses); the per-sentence tensors are
        shared, not copied."""
        return Memory(self.values, self.keys, self.mask, self.summary.repeat_interleave(group, dim=0))


@dataclass
class DecoderState:
    hidden: torch.Tensor  # (L, B, H)
    cell: torch.Tensor | None  # (L, B, H) for LSTMs, else None
    feed: torch.Tensor  # (B, F) previous attentional vector (input feeding)

    def select(self, index: torch.Tensor) -> "DecoderState":
        cell = self.cell.index_select(1, index) if self.cell is not None else None
        return DecoderState(self.hidden.index_select(1, index), cell, self.feed.index_select(0, index))


@dataclass
class StepCollectors:
    """Teacher-forced training: the weights used at every step get one gradient multiply per
    sequence instead of one per step (see s2s.model.step_weights)."""

    cells: list  # each layer's collectors for its per-step weights (see the cell's step_collectors)
    combine: StepGradients = field(default_factory=StepGradients)  # W_c
    query: StepGradients = field(default_factory=StepGradients)  # the attention's query projection


class Decoder(nn.Module):
    def __init__(
        self,
        cfg: DecoderConfig,
        vocab_size: int,
        embedding_size: int,
        embedding_dropout: float,
        word_dropout: float,
        encoder_size: int,
        tie_embeddings: bool,
        embedding: nn.Embedding | None = None,
    ):
        """`embedding`: an existing target embedding to use (the encoder's, for shared embeddings)."""
        super().__init__()
        self.hidden_size, self.num_layers = cfg.hidden_size, cfg.num_layers
        self.uses_memory_cell = has_memory_cell(cfg.cell)
        self.attention = make_attention(cfg.attention, cfg.hidden_size, encoder_size)
        self.feeds_attention = cfg.input_feeding and cfg.attention != Attention.none
        self.feed_dropout = cfg.feed_dropout
        self.output_size = embedding_size if tie_embeddings else cfg.hidden_size  # F
        input_size = embedding_size
        input_size += self.output_size if self.feeds_attention else 0
        input_size += encoder_size if self.attention is None else 0
        self.embedding = (
            embedding if embedding is not None else nn.Embedding(vocab_size, embedding_size, padding_idx=PAD)
        )
        self.embedding_dropout = Dropout(embedding_dropout)
        self.word_dropout = Dropout(word_dropout, whole_vectors=True)
        # layer 0's input: [emb(y_{t-1}); h_T (no attention)] is known ahead, f_{t-1} (input feeding) only per step
        self.ahead_size = embedding_size + (encoder_size if self.attention is None else 0)
        self.split_cells = cfg.cell in (Cell.lstm, Cell.gru)
        self.defer_step_gradients = True  # teacher forcing: one gradient multiply per sequence for per-step weights
        if self.split_cells:
            split_cell = SplitInputLSTMCell if cfg.cell == Cell.lstm else SplitInputGRUCell
            self.cells = nn.ModuleList(
                split_cell(self.ahead_size, input_size - self.ahead_size, cfg.hidden_size, cfg.layer_norm)
                if layer == 0
                else split_cell(0, cfg.hidden_size, cfg.hidden_size, cfg.layer_norm)
                for layer in range(cfg.num_layers)
            )
            self._register_load_state_dict_pre_hook(self._from_torch_cells)
        else:
            self.cells = nn.ModuleList(
                make_cell(cfg.cell, input_size if layer == 0 else cfg.hidden_size, cfg.hidden_size)
                for layer in range(cfg.num_layers)
            )
        self.dropout = Dropout(cfg.dropout)
        self.bridge_hidden = nn.Linear(encoder_size, cfg.num_layers * cfg.hidden_size)
        self.bridge_cell = nn.Linear(encoder_size, cfg.num_layers * cfg.hidden_size) if self.uses_memory_cell else None
        self.combine = nn.Linear(cfg.hidden_size + encoder_size, self.output_size)
        self.output = nn.Linear(self.output_size, vocab_size)
        if tie_embeddings:
            self.output.weight = self.embedding.weight

    def memory(self, encoded: EncoderOutput) -> Memory:
        keys = self.attention.prepare_keys(encoded.states) if self.attention is not None else None  # (B, S, A)
        return Memory(encoded.states, keys, encoded.mask, encoded.final_hidden[-1])

    def init_state(self, encoded: EncoderOutput) -> DecoderState:
        """The bridge: project the top encoder layer's h_T (and c_T) to every decoder layer."""
        batch = encoded.states.size(0)
        summary = encoded.final_hidden[-1]  # (B, C)
        hidden = torch.tanh(self.bridge_hidden(summary))  # (B, L*H)
        hidden = hidden.view(batch, self.num_layers, self.hidden_size).transpose(0, 1).contiguous()  # (L, B, H)
        cell = None
        if self.bridge_cell is not None:
            # from the encoder's c_T when it is an LSTM, else from its h_T
            source = encoded.final_cell[-1] if encoded.final_cell is not None else summary  # (B, C)
            cell = self.bridge_cell(source).view(batch, self.num_layers, self.hidden_size).transpose(0, 1).contiguous()
        feed = summary.new_zeros(batch, self.output_size)  # (B, F)
        return DecoderState(hidden, cell, feed)

    def step(
        self,
        embedded: torch.Tensor,
        state: DecoderState,
        memory: Memory,
        ahead_gates: torch.Tensor | None = None,
        step_gradients: StepCollectors | None = None,
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]:
        """embedded (B, E) -> attentional vector (B, F), new state, attention weights (B, S) or None.

        LSTM and GRU: `ahead_gates` (B, 4H or 3H) are layer 0's gate inputs when precomputed
        for all steps; `step_gradients` defer the gradients of the weights used at every step to
        one multiply per sequence.
        """
        if self.split_cells:
            if ahead_gates is None:
                ahead_gates = self.cells[0].ahead_gates(self._ahead_input(embedded, memory))  # (B, 4H or 3H)
            x = state.feed if self.feeds_attention else state.feed[:, :0]  # (B, F) or (B, 0)
        else:
            parts = [embedded, state.feed] if self.feeds_attention else [embedded]
            x = torch.cat(parts + ([memory.summary] if self.attention is None else []), dim=-1)  # (B, input size)
        hiddens, cells = [], []
        for layer, cell in enumerate(self.cells):
            if layer > 0:
                x = self.dropout(x)
            collector = step_gradients.cells[layer] if step_gradients is not None else None
            split_inputs = (ahead_gates if layer == 0 else None, collector) if self.split_cells else ()
            if self.uses_memory_cell:
                h, c = cell(x, (state.hidden[layer], state.cell[layer]), *split_inputs)  # (B, H) x2
                cells.append(c)
            else:
                h = cell(x, state.hidden[layer], *split_inputs)  # (B, H)
            hiddens.append(h)
            x = h
        query_gradients, combine_gradients = (
            (step_gradients.query, step_gradients.combine) if step_gradients is not None else (None, None)
        )
        if self.attention is not None:
            context, weights = attend(
                self.attention, x, memory.keys, memory.values, memory.mask, query_gradients
            )  # (B*G, C), (B*G, S)
        else:
            context, weights = memory.summary, None
        attentional = torch.tanh(
            step_linear(self.combine, torch.cat([x, context], dim=-1), combine_gradients)
        )  # (B, F)
        if self.feed_dropout:
            attentional = self.dropout(attentional)  # the same dropped vector is fed back and projected (see `logits`)
        new_state = DecoderState(torch.stack(hiddens), torch.stack(cells) if cells else None, attentional)
        return attentional, new_state, weights

    def ahead_gates(self, embedded: torch.Tensor, memory: Memory) -> torch.Tensor:
        """Layer 0's gate inputs from what is known in advance: embedded (B, T, E) -> (B, T, 4H or 3H)."""
        return self.cells[0].ahead_gates(self._ahead_input(embedded, memory))

    def _ahead_input(self, embedded: torch.Tensor, memory: Memory) -> torch.Tensor:
        """(..., E) -> (..., A): the embeddings, plus h_T when there is no attention."""
        if self.attention is not None:
            return embedded
        summary = (
            memory.summary if embedded.dim() == 2 else memory.summary.unsqueeze(1).expand(-1, embedded.size(1), -1)
        )
        return torch.cat([embedded, summary], dim=-1)

    def _from_torch_cells(self, state_dict: dict, prefix: str, *args) -> None:
        """Checkpoints written with `nn.LSTMCell` / `nn.GRUCell` decoder layers load into the split-input cells."""
        embedding, feed = self.embedding.embedding_dim, self.output_size if self.feeds_attention else 0
        for layer, cell in enumerate(self.cells):
            name = f"{prefix}cells.{layer}."
            if cell.weight_ahead is None:  # upper layers once kept an empty weight_ahead
                state_dict.pop(name + "weight_ahead", None)
            if name + "weight_ih" not in state_dict:
                continue
            weight_ih, weight_hh, bias_ih, bias_hh = (
                state_dict.pop(name + key) for key in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            )
            columns = torch.arange(weight_ih.size(1))
            # old layer-0 input order: [emb; feed] with attention, [emb; h_T] without
            is_step = (
                (columns >= embedding) & (columns < embedding + feed)
                if layer == 0
                else torch.ones_like(columns, dtype=torch.bool)
            )
            for key, value in cell.from_torch_cell(weight_ih, weight_hh, bias_ih, bias_hh, is_step).items():
                state_dict[name + key] = value

    def logits(self, attentional: torch.Tensor) -> torch.Tensor:
        """(..., F) -> (..., V); with `feed_dropout` the decoder step has already dropped f_t."""
        return self.output(attentional if self.feed_dropout else self.dropout(attentional))

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embedding_dropout(self.word_dropout(self.embedding(tokens)))  # (...,) -> (..., E)

    def forward(
        self, tgt_in: torch.Tensor, state: DecoderState, memory: Memory, teacher_forcing: float = 1.0
    ) -> torch.Tensor:
        """Teacher-forced decoding: tgt_in (B, T) -> logits (B, T, V).

        With teacher_forcing < 1 (scheduled sampling), each sentence is fed its own
        previous prediction instead of the gold token with probability 1 - teacher_forcing.
        """
        if teacher_forcing >= 1.0:
            embedded = self.embed(tgt_in)  # (B, T, E)
            ahead = (
                self.ahead_gates(embedded, memory) if self.split_cells else None
            )  # (B, T, 4H or 3H): one multiply for all steps
            defer = self.split_cells and self.defer_step_gradients and torch.is_grad_enabled()
            collectors = StepCollectors([cell.step_collectors() for cell in self.cells]) if defer else None
            # unbind, not [:, t]: the backward of T slices would add T zero-padded (B, T, ...) gradients
            steps = zip(embedded.unbind(1), ahead.unbind(1) if ahead is not None else [None] * tgt_in.size(1))
            outputs = []
            for embedded_t, ahead_t in steps:  # (B, E), (B, 4H) or None
                attentional, state, _ = self.step(embedded_t, state, memory, ahead_t, collectors)
                outputs.append(attentional)
            return self.logits(torch.stack(outputs, dim=1))  # (B, T, F) -> (B, T, V), one projection
        return self._scheduled_sampling(tgt_in, state, memory, teacher_forcing)

    def _scheduled_sampling(
        self, tgt_in: torch.Tensor, state: DecoderState, memory: Memory, ratio: float
    ) -> torch.Tensor:
        tokens = tgt_in[:, 0]  # (B,) BOS
        all_logits = []
        for t in range(tgt_in.size(1)):
            attentional, state, _ = self.step(self.embed(tokens), state, memory)
            logits = self.logits(attentional)  # (B, V)
            all_logits.append(logits)
            if t + 1 < tgt_in.size(1):
                use_gold = torch.rand(tokens.shape, device=tokens.device) < ratio  # (B,)
                tokens = torch.where(use_gold, tgt_in[:, t + 1], logits.argmax(dim=-1))
        return torch.stack(all_logits, dim=1)  # (B, T, V)
