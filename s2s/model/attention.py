"""Attention over encoder states: additive (Bahdanau) and multiplicative (Luong dot / general).

Shapes: B batch, S source length, C encoder state size, H decoder hidden size,
A attention key size, G queries per sentence (beam search: one per hypothesis, 1 otherwise).
Keys are projected once per sentence (`prepare_keys`); each decoder step only projects its
query. Keys, values and mask are kept once per sentence and shared by its G queries (rows
b*G .. b*G+G-1 of the query belong to sentence b), so beam search neither copies them per
hypothesis nor multiplies one query row at a time.
"""

from __future__ import annotations

import torch
from torch import nn

from s2s.config import Attention
from s2s.errors import S2SError
from s2s.model.step_weights import StepGradients, step_linear


class AdditiveAttention(nn.Module):
    """score(q, k) = v^T tanh(W_k k + W_q q)  (Bahdanau et al., 2015)."""

    def __init__(self, query_size: int, value_size: int):
        super().__init__()
        self.key_map = nn.Linear(value_size, query_size, bias=False)
        self.query_map = nn.Linear(query_size, query_size)
        self.energy = nn.Linear(query_size, 1, bias=False)

    def prepare_keys(self, values: torch.Tensor) -> torch.Tensor:
        return self.key_map(values)  # (B, S, C) -> (B, S, A=H)

    def scores(
        self, query: torch.Tensor, keys: torch.Tensor, query_gradients: StepGradients | None = None
    ) -> torch.Tensor:
        """query (B*G, H), keys (B, S, A) -> (B, G, S); `query_gradients` defers query_map's weight gradient."""
        return additive_scores(keys, step_linear(self.query_map, query, query_gradients), self.energy)


def additive_scores(keys: torch.Tensor, projected_query: torch.Tensor, energy: nn.Linear) -> torch.Tensor:
    """keys (B, S, A), projected query (B*G, A) -> v^T tanh(keys + query): (B, G, S)."""
    batch, _, size = keys.shape
    query = projected_query.view(batch, -1, 1, size)  # (B, G, 1, A)
    hidden = (keys.unsqueeze(1) + query).tanh_()  # (B, G, S, A), in place: one buffer
    return energy(hidden).squeeze(-1)  # (B, G, S)


class MultiplicativeAttention(nn.Module):
    """score(q, k) = q^T W k ("general") or q^T k ("dot")  (Luong et al., 2015)."""

    def __init__(self, query_size: int, value_size: int, general: bool):
        super().__init__()
        if general:
            self.key_map: nn.Module = nn.Linear(value_size, query_size, bias=False)
        elif value_size == query_size:
            self.key_map = nn.Identity()
        else:
            raise S2SError(
                f"luong_dot attention needs encoder outputs (2 x {value_size // 2}) as wide as the decoder "
                f"({query_size}); set model.decoder.hidden_size={value_size} or use luong_general"
            )

    def prepare_keys(self, values: torch.Tensor) -> torch.Tensor:
        return self.key_map(values)  # (B, S, C) -> (B, S, H)

    def scores(
        self, query: torch.Tensor, keys: torch.Tensor, query_gradients: StepGradients | None = None
    ) -> torch.Tensor:
        """query (B*G, H), keys (B, S, H) -> (B, G, S); the query is not projected, so query_gradients is unused."""
        grouped = query.view(keys.size(0), -1, query.size(-1))  # (B, G, H)
        return torch.bmm(grouped, keys.transpose(1, 2))  # (B, G, H) x (B, H, S) -> (B, G, S)


def attend(
    module: AdditiveAttention | MultiplicativeAttention,
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    query_gradients: StepGradients | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """query (B*G, H), keys (B, S, A), values (B, S, C), mask (B, S) -> context (B*G, C), weights (B*G, S).

    Padding gets exactly zero weight. `query_gradients`: see s2s.model.step_weights.
    """
    if query.size(0) % keys.size(0):
        raise ValueError(f"{query.size(0)} queries do not split into groups for {keys.size(0)} sentences")
    scores = module.scores(query, keys, query_gradients).masked_fill(~mask.unsqueeze(1), float("-inf"))  # (B, G, S)
    weights = torch.softmax(scores, dim=-1)  # (B, G, S)
    context = torch.bmm(weights, values)  # (B, G, C)
    return context.flatten(0, 1), weights.flatten(0, 1)  # (B*G, C), (B*G, S)


def make_attention(kind: Attention, query_size: int, value_size: int) -> nn.Module | None:
    """The attention module for a config choice; None for `none` (the decoder reads only h_T)."""
    match kind:
        case Attention.none:
            return None
        case Attention.bahdanau:
            return AdditiveAttention(query_size, value_size)
        case Attention.luong_dot:
            return MultiplicativeAttention(query_size, value_size, general=False)
        case Attention.luong_general:
            return MultiplicativeAttention(query_size, value_size, general=True)
