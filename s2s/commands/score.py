"""`python -m s2s.score [--model PATH ...] < pairs.tsv > scores.txt`: the log-probability of given translations.

Reads `source<TAB>target` lines (or two files, `--source F --target F`, line by line) and
writes exactly one line per pair, in order: the target's log-probability given the source,
summed over its subwords and EOS, and that sum divided by the number of subwords + 1. With
`--per-token`, two more columns: the target's subwords and each one's log-probability. Pairs
are scored teacher-forced in batches (forced decoding), for corpus filtering, quality
estimation or reranking. A blank target scores its EOS alone; the text after a second TAB is
part of the target.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator, TextIO

from tqdm import tqdm

from s2s.checkpoint import check_name as check_checkpoint_name
from s2s.commands.streaming import InvalidUtf8, stream_main
from s2s.data.text import clean, decode_line
from s2s.decoding.loading import load_translator
from s2s.decoding.translator import Score
from s2s.errors import S2SError

USAGE = (
    __doc__
    + """
Options, as --flag VALUE or key=value:
  --model PATH             a run directory, a checkpoint file or a model file (--run is the same; default:
                           the latest run under outputs/); repeat it to score with an ensemble
  --combine probs          probs | log_probs: how an ensemble averages its members' predictions
  --checkpoint best        best | last | averaged | step-N
  --device auto            auto | cpu | cuda | cuda:N
  --source FILE            read sources from FILE and targets from --target FILE instead of stdin
  --target FILE
  --per-token              also write the target's subwords and their log-probabilities
  --chunk-lines 1000       pairs read and scored at a time
  --on-invalid-utf8 error  error | replace: stop at input that is not UTF-8, or read it with U+FFFD
  --precision fp32         fp32 | bf16 | auto | int8, as for s2s.translate
"""
)


@dataclass
class ScoreOptions:
    model: list[str] = field(default_factory=list)  # run dir, checkpoint or model file; several: an ensemble
    combine: str = "probs"  # an ensemble: mean of probabilities (probs) or of log-probabilities (log_probs)
    checkpoint: str = "best"  # best | last | averaged | step-N
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    source: str | None = None  # sources file (with target=)
    target: str | None = None  # targets file
    per_token: bool = False  # also the subwords and their log-probabilities
    chunk_lines: int = 1000  # pairs per chunk
    on_invalid_utf8: InvalidUtf8 = InvalidUtf8.error


def tsv_pairs(stream: BinaryIO, replace_invalid: bool) -> Iterator[tuple[str, str]]:
    """(source, target) per `source<TAB>target` line; a line without a TAB is an S2SError naming it."""
    for number, raw in enumerate(stream, start=1):
        line = decode_line(raw, number, replace_invalid)
        source, tab, target = line.partition("\t")
        if not tab:
            raise S2SError(f"input line {number} has no TAB: score reads source<TAB>target lines")
        yield clean(source), clean(target)


def file_pairs(source_path: str, target_path: str, replace_invalid: bool) -> Iterator[tuple[str, str]]:
    """(source, target) from two files line by line; files of different lengths are an S2SError."""
    try:
        with open(source_path, "rb") as sources, open(target_path, "rb") as targets:
            for number, (src, tgt) in enumerate(itertools.zip_longest(sources, targets), start=1):
                if src is None or tgt is None:
                    shorter = source_path if src is None else target_path
                    raise S2SError(
                        f"{shorter} ends at line {number - 1}, before the other file: give one line per pair"
                    )
                yield (
                    clean(decode_line(src, number, replace_invalid)),
                    clean(decode_line(tgt, number, replace_invalid)),
                )
    except FileNotFoundError as error:
        raise S2SError(f"file {error.filename} does not exist") from None


def format_score(result: Score, per_token: bool) -> str:
    line = f"{result.score:.4f}\t{result.per_token:.4f}"
    if per_token:
        line += "\t" + " ".join(result.pieces) + "\t" + " ".join(f"{s:.4f}" for s in result.token_scores)
    return line


def check_options(options: ScoreOptions) -> None:
    if options.chunk_lines < 1:
        raise S2SError("chunk_lines must be at least 1")
    if (options.source is None) != (options.target is None):
        raise S2SError("give both --source FILE and --target FILE, or neither (then stdin holds source<TAB>target)")
    check_checkpoint_name(options.checkpoint)


def score_stream(
    options: ScoreOptions, search_overrides: list[str], stdin: BinaryIO, sink: TextIO, log: TextIO | None = None
) -> int:
    """Score every pair into `sink`, one line each; returns the number of pairs."""
    log = log if log is not None else sys.stderr
    check_options(options)
    translator, _, _ = load_translator(
        options.model, options.checkpoint, options.device, search_overrides, combine=options.combine
    )
    replace = options.on_invalid_utf8 == InvalidUtf8.replace
    pairs = (
        file_pairs(options.source, options.target, replace) if options.source is not None else tsv_pairs(stdin, replace)
    )
    count = 0
    with tqdm(desc="score", unit="pair", disable=None, file=log) as bar:
        while chunk := list(itertools.islice(pairs, options.chunk_lines)):
            results = translator.score([s for s, _ in chunk], [t for _, t in chunk])
            sink.write("".join(format_score(r, options.per_token) + "\n" for r in results))
            sink.flush()
            count += len(chunk)
            bar.update(len(chunk))
    return count


def main(argv: list[str] | None = None) -> None:
    stream_main(argv, ScoreOptions, USAGE, score_stream)


if __name__ == "__main__":
    main()
