"""The one exception type for mistakes a user can fix (bad input, bad config, missing files).

Command-line entry points catch it and print its message as one line on stderr,
then exit with status 2; anything else is a bug and keeps its traceback.
"""

import sys
from contextlib import contextmanager
from typing import Iterator


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
