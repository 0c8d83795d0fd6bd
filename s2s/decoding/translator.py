"""Translate lists of sentences with a trained model: tokenize, batch by length, decode, detokenize.

Used by validation during training, by `s2s.translate` and by `s2s.evaluate`.
Shapes: B batch, S source length (with EOS), T output length (without EOS).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch
from typing_extensions import Unpack

from s2s.config import Config, Precision, SearchConfig
from s2s.config_checks import check_search
from s2s.data.batching import Batch, make_batch, pad
from s2s.data.subwords import Tokenizers
from s2s.data.text import clean, split_spans
from s2s.decoding.constraints import SentenceConstraints, encode_constraints
from s2s.decoding.forced import token_log_probs
from s2s.decoding.options import SEARCH_OPTIONS, DecodingOptions, check_decoding_options, check_max_input_tokens
from s2s.decoding.rerank import rerank_hypotheses
from s2s.decoding.search import Hypothesis, decode
from s2s.errors import S2SError
from s2s.model.ensemble import Ensemble
from s2s.model.int8 import int8_copy
from s2s.model.seq2seq import Seq2Seq
from s2s.precision import resolve_precision
from s2s.special_tokens import BOS

EOS_LABEL = "</s>"  # the EOS row and column in attention plots


@dataclass
class Alignment:
    """Attention weights of one translation with the labels of their rows and columns.

    A line translated in parts (see `Translator.translate`) has one block per part,
    each with its own EOS row and column; weights between parts are zero.
    """

    weights: torch.Tensor  # (T', S') on the CPU
    source: list[str]  # S' column labels: source subwords, '</s>' after each part
    target: list[str]  # T' row labels: output subwords, '</s>' after each part


@dataclass
class Translation:
    """One input sentence's translation, as `Translator.translate_detailed` returns it."""

    text: str  # detokenized best hypothesis
    n_best: list[tuple[str, float]]  # (text, score) best first
    src_pieces: list[str]  # source subwords translated (after any cut)
    tgt_pieces: list[str]  # best hypothesis subwords
    attention: Alignment | None = None  # only when asked for
    src_length: int = 0  # source subwords before any cut
    truncated: bool = False  # the source was cut to max_tokens subwords
    unmet_constraints: list[str] = dataclasses.field(default_factory=list)  # constraints it could not place


@dataclass
class Score:
    """A given target's log-probability under the model, as `Translator.score` returns it."""

    score: float  # log p(target | source): the sum over the target's subwords and EOS
    per_token: float  # score / (subwords + 1)
    pieces: list[str]  # the target's subwords, then '</s>'
    token_scores: list[float]  # the log-probability of each piece


class Translator:
    """A trained model that translates lists of sentences (`s2s.load` makes one from a run).

    `translate(sentences, **options)` returns the best translation of each sentence as a
    string; `translate_detailed` returns `Translation`s (n-best with scores, attention,
    truncation). Options are keyword arguments (`DecodingOptions`) and apply to that call
    only; their defaults are the run's `search` settings and its `data.max_len`.

    A Translator may be shared between threads: a call changes nothing in it, so
    concurrent calls give what the same calls give one after another. Only sampling
    without `seed=` draws from one shared random generator, so such calls are not
    reproducible when they overlap. Concurrent calls also share the CPU's torch threads:
    one caller with long lists translates faster than many callers with short ones.

    `reverse_tag` is the tag that makes a both-directions model read a candidate toward the
    source language, for reranking by `search.reverse_weight` (s2s/decoding/rerank.py).
    """

    def __init__(
        self,
        model: Seq2Seq | Ensemble,
        tokenizers: Tokenizers,
        search: SearchConfig,
        device: torch.device,
        lowercase: bool = False,
        reverse_tag: tuple[int, ...] = (),
        config: Config | None = None,
        max_input_tokens: int | None = None,
    ):
        check_search_settings(search, reverse_tag)
        precision = resolve_precision(search.precision, device, "search.precision", decoding=True)
        self.model = decoding_copy(model, precision).to(device).eval()
        self.tokenizers, self.search, self.device, self.lowercase, self.reverse_tag = (
            tokenizers,
            search,
            device,
            lowercase,
            reverse_tag,
        )
        self.config, self.max_input_tokens = config, max_input_tokens
        self.generator = torch.Generator(device=device)

    @property
    def has_attention(self) -> bool:
        return self.model.has_attention

    @property
    def source_lang(self) -> str | None:
        return self.config.data.src_lang if self.config is not None else None

    @property
    def target_lang(self) -> str | None:
        return self.config.data.tgt_lang if self.config is not None else None

    def translate(self, sentences: list[str], **options: Unpack[DecodingOptions]) -> list[str]:
        """The best translation of each sentence, in input order; blank input gives ''.

        >>> translator.translate(["Dienstag, 9. November 1989"], beam_size=5)
        ['1989-11-09']
        """
        return [t.text for t in self.translate_detailed(sentences, **options)]

    def translate_detailed(
        self,
        sentences: list[str],
        *,
        constraints: list[list[str]] | None = None,
        prefix: list[str | None] | None = None,
        avoid: list[list[str]] | None = None,
        attention: bool = False,
        **options: Unpack[DecodingOptions],
    ) -> list[Translation]:
        """One Translation per input sentence, in input order; blank input gives empty output.

        `attention=True` also returns each translation's attention weights. Text is
        cleaned as `s2s.translate` cleans its input lines (control characters and line
        separators become spaces). A sentence of more than `max_input_tokens` source
        subwords is either split into parts of at most that many (`long_lines="split"`;
        cut after sentence punctuation where possible), each translated and the outputs
        joined with a space, or truncated to its first `max_input_tokens` subwords
        (`long_lines="truncate"`, flagged by `Translation.truncated`): a model never saw
        sources longer than its data.max_len in training, so it translates parts of that
        size better than the whole. The k-th of the n-best of a split sentence joins the
        k-th hypotheses of its parts, and its score is their sum.

        `constraints`, `prefix` and `avoid` are lists with one entry per sentence (None or [] for
        none): phrases that must appear in the translation, text it must start with, phrases it
        must not contain (s2s/decoding/constraints.py). A constraint that cannot be placed is
        named in `Translation.unmet_constraints`. A sentence with any of them is translated whole
        (never split; cut only with long_lines="truncate"), by beam search even at beam_size=1.
        """
        if isinstance(sentences, str):
            raise S2SError("translate takes a list of sentences, not one string: translate([text])")
        bad = next((s for s in sentences if not isinstance(s, str)), None)
        if bad is not None:
            raise S2SError(f"translate takes a list of str; got an item of type {type(bad).__name__}")
        search, max_tokens, split_long, generator = self._call_settings(options)
        lines = encode_constraints(self.tokenizers.tgt, len(sentences), constraints, prefix, avoid, self.lowercase)
        if lines is not None and search.sampling:
            raise S2SError("constraints, prefix and avoid need search, not sampling (search.sampling=false)")
        texts = [clean(s.lower() if self.lowercase else s) for s in sentences]
        ids = self.tokenizers.src.encode(texts)  # untagged: a both-directions model's tag goes before every part
        per_line = lines if lines is not None else [SentenceConstraints()] * len(texts)
        parts = [  # a constrained line is never split: its constraints belong to the whole sentence
            self._parts(i, None if c and split_long else max_tokens, split_long) if text.strip() else []
            for i, text, c in zip(ids, texts, per_line)
        ]
        tag = list(self.tokenizers.src_prefix)
        sources = [tag + p for ps in parts for p in ps]
        part_constraints = [c for ps, c in zip(parts, per_line) for _ in ps] if lines is not None else None
        decoded = iter(self._decode(sources, attention, search, generator, part_constraints))
        by_line = [[next(decoded) for _ in ps] for ps in parts]
        out = [self._translation(i, ps, d) for i, ps, d in zip(ids, parts, by_line)]
        for translation, line, wanted in zip(out, by_line, constraints or [None] * len(out)):
            if wanted:  # a constrained line is one part; a blank line places none of its constraints
                unmet = line[0][0][0].unmet if line else range(len(wanted))
                translation.unmet_constraints = [wanted[j] for j in unmet]
        return out

    def score(self, sources: list[str], targets: list[str]) -> list[Score]:
        """The log-probability of each target given its source, in input order (forced decoding).

        Both sides are cleaned (and lowercased for a data.lowercase model) as `translate` cleans
        its input; a source is read whole, never split. A blank target scores its EOS only.

        >>> translator.score(["Ein Hund."], ["A dog."])[0].per_token
        -0.21
        """
        for name, values in (("sources", sources), ("targets", targets)):
            if isinstance(values, str) or any(not isinstance(v, str) for v in values):
                raise S2SError(f"score takes {name} as a list of str")
        if len(sources) != len(targets):
            raise S2SError(f"score got {len(sources)} sources but {len(targets)} targets")
        prepare = (lambda t: clean(t.lower())) if self.lowercase else clean
        src_ids = self.tokenizers.encode_src([prepare(s) for s in sources])
        tgt_ids = self.tokenizers.tgt.encode([prepare(t) for t in targets])
        per_token = token_log_probs(self.model, src_ids, tgt_ids, self.device)
        out = []
        for ids, values in zip(tgt_ids, per_token):
            total = float(sum(values))
            pieces = [self.tokenizers.tgt.id_to_piece(i) for i in ids] + [EOS_LABEL]
            out.append(Score(total, total / len(values), pieces, values))
        return out

    def _call_settings(self, options: dict) -> tuple[SearchConfig, int | None, bool, torch.Generator]:
        """One call's search config, input limit, long-line rule and generator, with its options checked."""
        check_decoding_options(options)
        search = dataclasses.replace(self.search, **{k: v for k, v in options.items() if k in SEARCH_OPTIONS})
        check_search_settings(search, self.reverse_tag)
        max_tokens = options.get("max_input_tokens", self.max_input_tokens)
        check_max_input_tokens(max_tokens)
        long_lines = options.get("long_lines", "split")
        if long_lines not in ("split", "truncate"):
            raise S2SError(f"long_lines must be 'split' or 'truncate', got {long_lines!r}")
        generator = self.generator
        if options.get("seed") is not None:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(options["seed"])
        return search, max_tokens, long_lines == "split", generator

    def _parts(self, ids: list[int], max_tokens: int | None, split_long: bool) -> list[list[int]]:
        if not ids:
            return []
        if max_tokens is None or len(ids) <= max_tokens:
            return [ids]
        if not split_long:
            return [ids[:max_tokens]]
        pieces = [self.tokenizers.src.id_to_piece(i) for i in ids]
        return [ids[start:end] for start, end in split_spans(pieces, max_tokens)]

    def _decode(
        self,
        sources: list[list[int]],
        with_attention: bool,
        search: SearchConfig,
        generator: torch.Generator,
        constraints: list[SentenceConstraints] | None = None,
    ) -> list[tuple[list[Hypothesis], torch.Tensor | None]]:
        """n-best hypotheses (and the best one's attention) per source, batched by similar length;
        `constraints`, when given, has one entry per source."""
        results: list = [None] * len(sources)
        order = sorted(range(len(sources)), key=lambda i: len(sources[i]))  # similar lengths together: little padding
        for start in range(0, len(order), search.batch_size):
            chunk = order[start : start + search.batch_size]
            batch = make_batch([sources[i] for i in chunk], None, chunk).to(self.device)
            chunk_constraints = [constraints[i] for i in chunk] if constraints is not None else None
            hypotheses = self._search(batch, [sources[i] for i in chunk], search, generator, chunk_constraints)
            weights = (
                forced_attention(self.model, batch, [h[0].tokens for h in hypotheses])
                if with_attention
                else [None] * len(chunk)
            )
            for i, n_best, w in zip(chunk, hypotheses, weights):
                results[i] = (n_best, w)
        return results

    def _search(
        self,
        batch: Batch,
        sources: list[list[int]],
        search: SearchConfig,
        generator: torch.Generator,
        constraints: list[SentenceConstraints] | None = None,
    ) -> list[list[Hypothesis]]:
        """n-best per sentence of `batch`; with search.reverse_weight the whole beam, reranked."""
        weight = search.reverse_weight
        if not weight or search.beam_size <= 1:
            return decode(self.model, batch, search, generator, constraints=constraints)
        whole_beam = dataclasses.replace(search, n_best=search.beam_size)
        hypotheses = decode(self.model, batch, whole_beam, generator, constraints=constraints)
        untagged = [ids[len(self.tokenizers.src_prefix) :] for ids in sources]
        return rerank_hypotheses(self.model, untagged, hypotheses, self.reverse_tag, weight, search.n_best, self.device)

    def _translation(
        self, ids: list[int], parts: list[list[int]], decoded: list[tuple[list[Hypothesis], torch.Tensor | None]]
    ) -> Translation:
        if not parts:
            return Translation("", [("", 0.0)], [], [], src_length=len(ids))
        n_best = []
        for k in range(max(len(hyps) for hyps, _ in decoded)):
            chosen = [hyps[min(k, len(hyps) - 1)] for hyps, _ in decoded]
            texts = self.tokenizers.decode_tgt([h.tokens for h in chosen])
            n_best.append((" ".join(t for t in texts if t), sum(h.score for h in chosen)))
        best = [hyps[0].tokens for hyps, _ in decoded]
        return Translation(
            text=n_best[0][0],
            n_best=n_best,
            src_pieces=[self.tokenizers.src.id_to_piece(i) for part in parts for i in part],
            tgt_pieces=[self.tokenizers.tgt.id_to_piece(i) for tokens in best for i in tokens],
            attention=self._alignment(parts, best, [w for _, w in decoded]) if decoded[0][1] is not None else None,
            src_length=len(ids),
            truncated=sum(len(p) for p in parts) < len(ids),
        )

    def _alignment(self, parts: list[list[int]], outputs: list[list[int]], weights: list[torch.Tensor]) -> Alignment:
        src, tgt, prefix = self.tokenizers.src, self.tokenizers.tgt, list(self.tokenizers.src_prefix)
        return Alignment(
            weights=torch.block_diag(*weights),  # (T', S')
            source=[label for part in parts for label in [src.id_to_piece(i) for i in prefix + part] + [EOS_LABEL]],
            target=[label for out in outputs for label in [tgt.id_to_piece(i) for i in out] + [EOS_LABEL]],
        )


def check_search_settings(search: SearchConfig, reverse_tag: tuple[int, ...]) -> None:
    """Search settings in range (s2s.config_checks), and reranking only for a both-directions model."""
    check_search(search)
    if search.reverse_weight and not reverse_tag:
        raise S2SError(
            "search.reverse_weight needs a model trained with data.both_directions=true "
            "(it scores the source back with the same model)"
        )


@torch.inference_mode()
def forced_attention(model: Seq2Seq | Ensemble, batch: Batch, outputs: list[list[int]]) -> list[torch.Tensor]:
    """Attention weights for given outputs, by feeding them back through the model (teacher forcing).

    Search keeps weights only for greedy decoding and sampling; replaying the chosen
    tokens gives them for any search, and for exactly the tokens printed. Returns,
    per sentence of `batch`, weights (len(output) + 1, source length + 1) on the CPU:
    the last row is the step that produced EOS, the last column the source EOS.
    """
    if not model.has_attention:
        raise S2SError("this model has no attention to plot (it was trained with model.decoder.attention=none)")
    tgt_in = pad(outputs, prefix=BOS).to(batch.src.device)  # (B, T+1)
    memory, state = model.encode(batch.src, batch.src_lengths)
    rows = []
    for t in range(tgt_in.size(1)):
        _, state, weights = model.step(tgt_in[:, t], state, memory)  # weights (B, S)
        rows.append(weights)
    weights = torch.stack(rows, dim=1).float().cpu()  # (B, T+1, S)
    lengths = batch.src_lengths.tolist()
    return [weights[b, : len(out) + 1, : lengths[b]] for b, out in enumerate(outputs)]


def decoding_copy(model: Seq2Seq | Ensemble, precision: Precision) -> Seq2Seq | Ensemble:
    """The model in its decoding precision: a bf16 or int8 copy (the caller's model, perhaps still
    training, stays fp32), or the model itself for fp32; an ensemble member by member."""
    if isinstance(model, Ensemble):
        return Ensemble([decoding_copy(m, precision) for m in model.members], model.combine)
    if precision == Precision.bf16:
        return copy.deepcopy(model).to(torch.bfloat16)
    if precision == Precision.int8:
        return int8_copy(model)
    return model
