"""`python -m s2s.translate [run=PATH] [search.beam_size=5 ...] < input.txt > output.txt`

Reads UTF-8 text, one sentence per line, and writes exactly one detokenized
translation per input line, in order (blank lines give blank lines). Input is
read and translated in chunks, so files of any size stream through.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import BinaryIO, Iterator, TextIO

from s2s.cli import parse_overrides
from s2s.errors import S2SError, user_errors_exit
from s2s.translator import Translation, load_translator

USAGE = __doc__ + """
Options (key=value):
  run=PATH            training run directory or checkpoint file (default: the latest run under outputs/)
  checkpoint=best     best | last: which checkpoint of the run
  device=auto         auto | cpu | cuda | cuda:N
  chunk_lines=1000    lines read and translated at a time
  scores=false        write `translation<TAB>score`; with search.n_best>1 all hypotheses, tab-separated
  search.KEY=VALUE    decoding options (beam_size, length_penalty, n_best, max_len_a, max_len_b,
                      batch_size, sampling, temperature, top_k); default: the run's own
"""


@dataclass
class TranslateOptions:
    run: str | None = None  # run directory or checkpoint (default: latest under outputs/)
    checkpoint: str = "best"  # best | last
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    chunk_lines: int = 1000  # lines per chunk
    scores: bool = False  # append scores (and n-best) to each line


def read_chunks(stream: BinaryIO, size: int) -> Iterator[list[str]]:
    """Lines of a byte stream, decoded as UTF-8, `size` at a time; split on '\\n' only."""
    chunk: list[str] = []
    for number, raw in enumerate(stream, start=1):
        try:
            chunk.append(raw.decode("utf-8").rstrip("\n").rstrip("\r"))
        except UnicodeDecodeError as error:
            raise S2SError(f"input line {number} is not valid UTF-8 (byte {error.start}: {raw[error.start:error.start + 1]!r})") from None
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def one_line(text: str) -> str:
    """Keep the one-line-per-input promise even if a piece decodes to a line break."""
    return " ".join(text.splitlines()) if text else ""


def format_line(translation: Translation, with_scores: bool) -> str:
    if not with_scores:
        return one_line(translation.text)
    return "\t".join(f"{one_line(text)}\t{score:.4f}" for text, score in translation.n_best)


def translate_stream(options: TranslateOptions, search_overrides: list[str], source: BinaryIO, sink: TextIO) -> int:
    """Translate every line of `source` into `sink`; returns the number of lines."""
    if options.chunk_lines < 1:
        raise S2SError("chunk_lines must be at least 1")
    if options.checkpoint not in ("best", "last"):
        raise S2SError(f"checkpoint={options.checkpoint} must be best or last (or give run=FILE.pt)")
    translator, _, _ = load_translator(options.run, options.checkpoint, options.device, search_overrides)
    count = 0
    for chunk in read_chunks(source, options.chunk_lines):
        for translation in translator.translate(chunk):
            sink.write(format_line(translation, options.scores) + "\n")
        sink.flush()
        count += len(chunk)
    return count


def main(argv: list[str] | None = None) -> None:
    with user_errors_exit():
        options, search = parse_overrides(sys.argv[1:] if argv is None else argv, TranslateOptions, USAGE)
        translate_stream(options, search, sys.stdin.buffer, sys.stdout)


if __name__ == "__main__":
    main()
