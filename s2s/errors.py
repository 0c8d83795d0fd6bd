"""The one exception type for mistakes a user can fix (bad input, bad config, missing files).

Command-line entry points catch it and print its message as one line on stderr,
then exit with status 2; anything else is a bug and keeps its traceback.
"""

import difflib
import sys
from contextlib import contextmanager
from typing import Iterable, Iterator


class S2SError(Exception):
    """A user error: the message says what was wrong, where, and what to do."""


EXIT_USER_ERROR = 2


@contextmanager
def user_errors_exit() -> Iterator[None]:
    """Turn an S2SError into `error: <message>` on stderr and exit status 2."""
    try:
        yield
    except S2SError as error:
        message = " ".join(str(error).split("\n"))
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """'; did you mean X?' with the closest of `choices` to `word`, or '' when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""
