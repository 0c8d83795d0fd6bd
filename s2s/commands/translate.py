"""`python -m s2s.translate [--model PATH] [--beam-size 5 ...] < input.txt > output.txt`

Reads UTF-8 text, one sentence per line, and writes exactly one detokenized
translation per input line, in order, whatever the line holds: blank lines give
blank lines, control characters and line separators are read as spaces, and
characters the model never saw are unknown subwords. Input is read and
translated in chunks, so files of any size stream through.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from enum import Enum
from typing import BinaryIO, Iterator, TextIO

from tqdm import tqdm

from s2s.checkpoint import check_name as check_checkpoint_name
from s2s.commands.streaming import InvalidUtf8, stream_main
from s2s.data.text import clean, decode_line
from s2s.decoding.loading import load_translator
from s2s.decoding.options import check_max_input_tokens
from s2s.decoding.translator import Translation, Translator
from s2s.errors import S2SError

USAGE = (
    __doc__
    + """
Options, as --flag VALUE or key=value (--foo-bar X is foo_bar=X):
  --model PATH             a run directory, a checkpoint file or a model file (python -m s2s.export);
                           --run PATH is the same (default: the latest run under outputs/); repeat
                           it for an ensemble: --model A --model B
  --checkpoint best        best | last | averaged (python -m s2s.average) | step-N (trainer.keep_checkpoints)
  --device auto            auto | cpu | cuda | cuda:N
  --chunk-lines 1000       lines read and translated at a time
  --seed 0                 seeds sampling (search.sampling=true): same seed, same samples
  --scores                 write `translation<TAB>score`; with --n-best N, N such pairs per line
  --beam-size N            beam search with N hypotheses (1 = greedy)          = search.beam_size=N
  --n-best N               print the N best hypotheses with scores (<= beam)    = search.n_best=N
  --batch-size N           sentences per decoding batch                         = search.batch_size=N
  --precision fp32         fp32 | bf16 | auto | int8: bf16 weights and activations, faster on GPUs
                           and on CPUs with AMX (scores stay fp32); auto: bf16 only where native
                           and faster; int8: int8 matrix multiplies on a CPU (any x86 with AVX2),
                           at a few tenths of BLEU                              = search.precision=P
  --long-lines split       split | truncate: lines of more than --max-input-tokens subwords are
                           translated in parts joined by a space (split), or cut with a warning
  --max-input-tokens N     source subwords per translation (default: the run's data.max_len)
  --reverse                translate the other way (target to source language) with a model trained
                           with data.both_directions=true
  --on-invalid-utf8 error  error | replace: stop at input that is not UTF-8, or read it with U+FFFD
  --attention-plots DIR    write an attention heatmap DIR/line-000001.png per non-empty line
  --input-format text      text | jsonl: each line a JSON object {"text": ..., "constraints": [phrases
                           that must appear], "prefix": "the output starts with this", "avoid":
                           [phrases that must not appear]} (all but text optional; docs/cli.md)
  --combine probs          probs | log_probs: how an ensemble (--model A --model B) averages its
                           members' predictions
  search.KEY=VALUE         any decoding option (beam_size, length_penalty, n_best, max_len_a,
                           max_len_b, batch_size, precision, sampling, temperature, top_k, top_p), also as
                           --search.KEY VALUE; default: the run's own
"""
)


class InputFormat(str, Enum):
    text = "text"  # one sentence per line
    jsonl = "jsonl"  # one JSON object per line: {"text", "constraints", "prefix", "avoid"}


JSONL_KEYS = {"text": str, "constraints": list, "prefix": str, "avoid": list}


class LongLines(str, Enum):
    split = "split"  # translate in parts of at most max_input_tokens subwords; join the outputs with a space
    truncate = "truncate"  # translate only the first max_input_tokens subwords; warn on stderr


@dataclass
class TranslateOptions:
    model: list[str] = field(default_factory=list)  # run dir, checkpoint or model file; several: an ensemble
    combine: str = "probs"  # an ensemble: mean of probabilities (probs) or of log-probabilities (log_probs)
    checkpoint: str = "best"  # best | last | averaged | step-N
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    chunk_lines: int = 1000  # lines per chunk
    scores: bool = False  # append scores to each line (implied by search.n_best > 1)
    attention_plots: str | None = None  # directory for one attention heatmap PNG per non-empty line
    on_invalid_utf8: InvalidUtf8 = InvalidUtf8.error  # what to do with bytes that are not UTF-8
    long_lines: LongLines = LongLines.split  # what to do with lines over max_input_tokens subwords
    max_input_tokens: int | None = None  # source subwords per translation (default: the run's data.max_len)
    seed: int = 0  # seeds sampling (search.sampling=true): the same seed gives the same samples
    reverse: bool = False  # translate tgt_lang -> src_lang (a model trained with data.both_directions)
    input_format: InputFormat = InputFormat.text  # text | jsonl (per-line constraints, prefix, avoided phrases)


def read_chunks(stream: BinaryIO, size: int, replace_invalid: bool = False) -> Iterator[list[str]]:
    """Cleaned lines of a byte stream, `size` at a time; lines end at '\\n' only, so none is lost or added."""
    chunk: list[str] = []
    for number, raw in enumerate(stream, start=1):
        chunk.append(clean(decode_line(raw, number, replace_invalid)))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def parse_jsonl(line: str, number: int) -> dict:
    """One --input-format jsonl line -> {"text", "constraints", "prefix", "avoid"}; a blank line is
    an empty text. Bad JSON, an unknown key or a wrong type is an S2SError naming the line."""
    if not line.strip():
        return {"text": ""}
    try:
        item = json.loads(line)
    except json.JSONDecodeError as error:
        raise S2SError(f"line {number} is not valid JSON: {error.msg} (column {error.colno})") from None
    if not isinstance(item, dict):
        raise S2SError(f'line {number}: expected a JSON object with a "text", got {type(item).__name__}')
    unknown = sorted(set(item) - set(JSONL_KEYS))
    if unknown:
        raise S2SError(f"line {number}: unknown key {unknown[0]!r} (keys: {', '.join(JSONL_KEYS)})")
    if "text" not in item:
        raise S2SError(f'line {number}: no "text" key')
    for key, kind in JSONL_KEYS.items():
        value = item.get(key)
        if key in item and not (isinstance(value, kind) or (key == "prefix" and value is None)):
            raise S2SError(f"line {number}: {key!r} must be a JSON {'string' if kind is str else 'list'}")
        if kind is list and value is not None and any(not isinstance(v, str) for v in value):
            raise S2SError(f"line {number}: {key!r} must be a list of strings")
    return item


def one_line(text: str) -> str:
    """Keep the one-line-per-input promise even if a piece decodes to a line break."""
    return " ".join(text.splitlines()) if text else ""


def format_line(translation: Translation, with_scores: bool) -> str:
    if not with_scores:
        return one_line(translation.text)
    return "\t".join(f"{one_line(text)}\t{score:.4f}" for text, score in translation.n_best)


def check_options(options: TranslateOptions) -> None:
    """The checks that need no model, so a mistake fails before a checkpoint is loaded."""
    if options.chunk_lines < 1:
        raise S2SError("chunk_lines must be at least 1")
    check_checkpoint_name(options.checkpoint)
    check_max_input_tokens(options.max_input_tokens)


def prepare_plots(directory: str, translator: Translator) -> None:
    if not translator.has_attention:
        raise S2SError("this model has no attention to plot (it was trained with model.decoder.attention=none)")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        raise S2SError(f"cannot make the attention plot directory {directory}: {error.strerror}") from None


def translate_stream(
    options: TranslateOptions, search_overrides: list[str], source: BinaryIO, sink: TextIO, log: TextIO | None = None
) -> int:
    """Translate every line of `source` into `sink`, one line each; warnings and progress go to `log`
    (default stderr). Returns the number of lines."""
    log = log if log is not None else sys.stderr
    check_options(options)
    translator, cfg, _ = load_translator(
        options.model, options.checkpoint, options.device, search_overrides, options.reverse, options.combine
    )
    translator.generator.manual_seed(options.seed)
    max_tokens = options.max_input_tokens if options.max_input_tokens is not None else cfg.data.max_len
    plots = options.attention_plots
    if plots is not None:
        prepare_plots(plots, translator)
        from s2s.plots import save_attention_heatmap  # matplotlib takes a while to import; only plots need it
    with_scores = options.scores or translator.search.n_best > 1  # n-best lists are only useful with their scores
    count = 0
    with tqdm(desc="translate", unit="line", disable=None, file=log) as bar:
        for chunk in read_chunks(source, options.chunk_lines, options.on_invalid_utf8 == InvalidUtf8.replace):
            per_line: dict = {}
            if options.input_format == InputFormat.jsonl:
                items = [parse_jsonl(line, number) for number, line in enumerate(chunk, start=count + 1)]
                chunk = [item["text"] for item in items]
                per_line = {
                    "constraints": [item.get("constraints") or [] for item in items],
                    "prefix": [item.get("prefix") for item in items],
                    "avoid": [item.get("avoid") or [] for item in items],
                }
            translations = translator.translate_detailed(
                chunk,
                attention=plots is not None,
                max_input_tokens=max_tokens,
                long_lines=options.long_lines.value,
                **per_line,
            )
            for number, translation in enumerate(translations, start=count + 1):
                for phrase in translation.unmet_constraints:
                    tqdm.write(f"warning: line {number}: constraint {phrase!r} could not be met", file=log)
                if translation.truncated:
                    tqdm.write(
                        f"warning: line {number} has {translation.src_length} subwords; truncated to {max_tokens} "
                        "(use --long-lines split to translate it in full)",
                        file=log,
                    )
                if plots is not None and translation.attention is not None:
                    alignment = translation.attention
                    save_attention_heatmap(
                        os.path.join(plots, f"line-{number:06d}.png"),
                        alignment.weights,
                        alignment.source,
                        alignment.target,
                        f"line {number}",
                    )
                sink.write(format_line(translation, with_scores) + "\n")
            sink.flush()
            count += len(chunk)
            bar.update(len(chunk))
    return count


def main(argv: list[str] | None = None) -> None:
    stream_main(argv, TranslateOptions, USAGE, translate_stream)


if __name__ == "__main__":
    main()
