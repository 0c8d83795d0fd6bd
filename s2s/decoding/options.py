"""The per-call decoding options of `Translator.translate`, typed, and their check.

A user passes them as keyword arguments (`translate(lines, beam_size=5)`); a misspelt name
gets the closest valid one, a wrong type a one-line error, before anything is decoded.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Optional

from typing_extensions import TypedDict

from s2s.config import SearchConfig
from s2s.errors import S2SError, did_you_mean


class DecodingOptions(TypedDict, total=False):
    """Per-call decoding options of `Translator.translate` and `translate_detailed`.

    The search keys mean what the `search.*` config keys of the same name mean
    (docs/configuration.md); an option not given keeps the Translator's setting.
    """

    beam_size: int  # 1 = greedy search
    length_penalty: float  # GNMT alpha (beam search only)
    max_len_a: float  # output limit: a * source length + b tokens
    max_len_b: int
    n_best: int  # hypotheses kept per sentence (<= beam_size); translate returns the best only
    sampling: bool  # sample instead of searching
    temperature: float  # sampling: softmax temperature
    top_k: int  # sampling: keep only the k most likely tokens (0 = all)
    top_p: float  # sampling: keep the fewest most likely tokens whose probabilities reach p (1 = all)
    batch_size: int  # sentences per decoding batch
    reverse_weight: float  # rerank the beam by the reverse direction (data.both_directions models)
    max_input_tokens: Optional[int]  # source subwords per translation; None = no limit
    long_lines: str  # "split": longer sentences are translated in parts; "truncate": cut to max_input_tokens
    seed: Optional[int]  # sampling: a fresh generator seeded with this, so the call is reproducible


SEARCH_OPTIONS = tuple(f.name for f in dataclasses.fields(SearchConfig) if f.name != "precision")
DECODING_OPTIONS = tuple(typing.get_type_hints(DecodingOptions))


def check_decoding_options(options: dict) -> None:
    """Unknown options (with the closest valid name) and wrong types raise S2SError."""
    hints = typing.get_type_hints(DecodingOptions)
    for name, value in options.items():
        if name == "precision":
            raise S2SError(
                "precision is chosen when the model is loaded: s2s.load(path, precision='bf16'), not per call"
            )
        if name not in hints:
            hint = did_you_mean(name, DECODING_OPTIONS) or f" (options: {', '.join(DECODING_OPTIONS)})"
            raise S2SError(f"unknown decoding option {name!r}{hint}")
        if not _has_type(value, hints[name]):
            raise S2SError(f"decoding option {name} must be {_type_name(hints[name])}, got {value!r}")


def _has_type(value: object, kind: object) -> bool:
    """bool is not an int here, an int is a float, None only where Optional."""
    allowed = typing.get_args(kind) if typing.get_origin(kind) is typing.Union else (kind,)
    if value is None:
        return type(None) in allowed
    if isinstance(value, bool):
        return bool in allowed
    return any(
        isinstance(value, int if t is int else (int, float) if t is float else t)
        for t in allowed
        if t is not type(None)
    )  # type: ignore[arg-type]


def _type_name(kind: object) -> str:
    allowed = typing.get_args(kind) if typing.get_origin(kind) is typing.Union else (kind,)
    return " or ".join("None" if t is type(None) else t.__name__ for t in allowed)  # type: ignore[union-attr]


def check_max_input_tokens(value: int | None) -> None:
    if value is not None and value < 1:
        raise S2SError(f"max_input_tokens must be at least 1, got {value}")
