"""What the stdin-to-stdout commands (translate, score) share: the policy for input that is not UTF-8,
and the run of a command from its arguments to its exit status."""

from __future__ import annotations

import os
import sys
from enum import Enum
from typing import Callable

from s2s.arguments import parse_overrides
from s2s.errors import user_errors_exit


class InvalidUtf8(str, Enum):
    error = "error"  # stop with one error line naming the input line
    replace = "replace"  # decode with U+FFFD in place of the bad bytes and go on


def stream_main(argv: list[str] | None, schema: type, usage: str, stream: Callable) -> None:
    """A stdin-to-stdout command: parse `argv` into `schema` options, run `stream(options, search, stdin,
    stdout)`; bad input is one error line and exit status 2."""
    with user_errors_exit():
        options, search = parse_overrides(sys.argv[1:] if argv is None else argv, schema, usage)
        sys.stdout.reconfigure(encoding="utf-8")  # type: ignore[attr-defined]  # UTF-8 out, whatever the locale
        try:
            stream(options, search, sys.stdin.buffer, sys.stdout)
        except BrokenPipeError:  # the reader stopped early (`| head`): not an error of ours
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail again
            sys.exit(1)
