"""Dynamic batching: lines from concurrent requests decoded together by one model worker.

A request's lines join a bounded queue. The worker takes the oldest request, waits at most
`max_wait` seconds for more requests of the same task ("translate", "score") with the same
decoding options until `max_sentences` lines are gathered, decodes them in one call of the
`decode` function (`Translator.translate_detailed` or `Translator.score`), and hands each
request its own results, in order. A line is whatever that function takes per line: a
text, or a text with its constraints, or a (source, target) pair. Requests are never split across batches, so a request
of more lines than `max_sentences` is decoded alone. Padding is masked and the translator sorts
by length, so a line's greedy output does not depend on the other lines of its batch.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

Decode = Callable[[str, list[Any], dict[str, Any]], list[Any]]  # (task, lines, options) -> one result per line


class QueueFull(Exception):
    """The queue holds `max_queue` lines already: the client should retry later."""


@dataclass
class Job:
    """One request's lines, its decoding options and the future its results go to."""

    lines: list[Any]
    options: dict[str, Any]
    key: tuple  # the task and options as a hashable key: only jobs with equal keys share a batch
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


@dataclass
class BatchStats:
    batches: int = 0
    lines: int = 0
    largest: int = 0


class Batcher:
    """Gathers jobs into batches and decodes them on one worker thread (`start`, `submit`, `stop`)."""

    def __init__(self, decode: Decode, max_sentences: int, max_wait: float, max_queue: int):
        self.decode, self.max_sentences, self.max_wait, self.max_queue = (
            decode,
            max_sentences,
            max_wait,
            max_queue,
        )
        self.jobs: collections.deque[Job] = collections.deque()
        self.queued_lines = 0
        self.ready = threading.Condition()
        self.stopping = False
        self.stats = BatchStats()
        self.worker = threading.Thread(target=self._work, name="s2s-model-worker", daemon=True)

    def start(self) -> None:
        """Decode on a thread of its own (see `run` for decoding on the calling thread)."""
        self.worker.start()

    def run(self) -> None:
        """Decode on the calling thread until `stop`: for a process whose torch work all runs on one
        thread (torch's CPU thread pool slows down when a second thread starts using it)."""
        self._work()

    def submit(self, lines: list[Any], options: dict[str, Any], task: str = "translate") -> asyncio.Future:
        """Queue a request (on the event loop); its future gets one result per line."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not lines:
            future.set_result([])
            return future
        with self.ready:
            if self.stopping:
                raise QueueFull("the server is shutting down")
            if self.queued_lines + len(lines) > self.max_queue:
                raise QueueFull(f"{self.queued_lines} lines are queued already (at most {self.max_queue})")
            self.jobs.append(Job(lines, options, (task, *sorted(options.items())), future, loop))
            self.queued_lines += len(lines)
            self.ready.notify()
        return future

    def stop(self, timeout: float | None = None, wait: bool = True) -> None:
        """Decode what is queued, then end the worker (waiting for its thread unless `wait` is false)."""
        with self.ready:
            self.stopping = True
            self.ready.notify()
        if wait and self.worker.is_alive():
            self.worker.join(timeout)

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._decode(batch)

    def _next_batch(self) -> list[Job] | None:
        """The next jobs to decode together; None once stopping with nothing left."""
        with self.ready:
            while not self.jobs:
                if self.stopping:
                    return None
                self.ready.wait()
            key = self.jobs[0].key
            deadline = time.monotonic() + self.max_wait
            while not self.stopping and self._lines_with(key) < self.max_sentences:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.ready.wait(remaining)
            batch, lines = [], 0
            for job in list(self.jobs):
                if job.key != key:
                    continue
                if batch and lines + len(job.lines) > self.max_sentences:
                    break
                batch.append(job)
                lines += len(job.lines)
            for job in batch:
                self.jobs.remove(job)
            self.queued_lines -= lines
            return batch

    def _lines_with(self, key: tuple) -> int:
        return sum(len(job.lines) for job in self.jobs if job.key == key)

    def _decode(self, batch: list[Job]) -> None:
        lines = [line for job in batch for line in job.lines]
        try:
            results = self.decode(batch[0].key[0], lines, batch[0].options)
        except Exception as error:  # handed to each request, which answers with an error status
            for job in batch:
                job.loop.call_soon_threadsafe(_fail, job.future, error)
            return
        self.stats.batches += 1
        self.stats.lines += len(lines)
        self.stats.largest = max(self.stats.largest, len(lines))
        start = 0
        for job in batch:
            part = results[start : start + len(job.lines)]
            start += len(job.lines)
            job.loop.call_soon_threadsafe(_succeed, job.future, part)


def _succeed(future: asyncio.Future, result: list[Any]) -> None:
    if not future.done():  # a client that disconnected has its future cancelled
        future.set_result(result)


def _fail(future: asyncio.Future, error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
