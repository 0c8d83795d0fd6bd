"""Turn SIGINT / SIGTERM into a flag the training loop checks between steps.

The loop then saves a checkpoint and exits with a message; a second signal
while saving is ignored so the checkpoint is not cut in half.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Iterator


class StopRequest:
    def __init__(self) -> None:
        self.signal_number: int | None = None

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signal_number).name if self.signal_number else ""

    def _handle(self, signal_number: int, _frame: object) -> None:
        self.signal_number = signal_number


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Within the block, SIGINT and SIGTERM set `request.requested` instead of killing the process."""
    request = StopRequest()
    previous = {s: signal.signal(s, request._handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
