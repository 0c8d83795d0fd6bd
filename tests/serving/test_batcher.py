"""The dynamic batcher (s2s/serving/batcher.py) with a recording stand-in for the translator: concurrent
requests share a batch, bounds hold, options never mix, every request gets its own lines back in order."""

from __future__ import annotations

import asyncio
import threading

import pytest

from s2s.decoding.translator import Translation
from s2s.serving.batcher import Batcher, QueueFull


class Recorder:
    """Translates a line to its upper case and records the batches it was given."""

    def __init__(self, delay: threading.Event | None = None):
        self.batches: list[tuple[list[str], dict]] = []
        self.tasks: list[str] = []
        self.gate = delay

    def __call__(self, task: str, lines: list[str], options: dict) -> list[Translation]:
        if self.gate is not None:
            self.gate.wait(5)
        self.batches.append((list(lines), dict(options)))
        self.tasks.append(task)
        return [Translation(line.upper(), [(line.upper(), 0.0)], [], []) for line in lines]


async def _gather(batcher: Batcher, requests: list[tuple[list[str], dict]]) -> list[list[str]]:
    futures = [batcher.submit(lines, options) for lines, options in requests]
    return [[t.text for t in result] for result in await asyncio.gather(*futures)]


def _on_worker_thread(batcher: Batcher, scenario):
    """Run the coroutine function `scenario` against the batcher decoding on its own thread."""
    batcher.start()
    try:
        return asyncio.run(scenario())
    finally:
        batcher.stop(5)


def _run(batcher: Batcher, requests: list[tuple[list[str], dict]]) -> list[list[str]]:
    return _on_worker_thread(batcher, lambda: _gather(batcher, requests))


def test_concurrent_requests_share_one_batch_and_get_their_own_lines():
    recorder = Recorder()
    requests = [([f"r{r}-l{i}" for i in range(r + 1)], {}) for r in range(5)]
    results = _run(Batcher(recorder, max_sentences=64, max_wait=0.5, max_queue=100), requests)
    assert results == [[line.upper() for line in lines] for lines, _ in requests]
    assert len(recorder.batches) == 1 and len(recorder.batches[0][0]) == 15


def test_a_batch_holds_at_most_max_sentences_and_requests_are_not_split():
    recorder = Recorder()
    requests = [([f"r{r}-l{i}" for i in range(3)], {}) for r in range(6)]
    results = _run(Batcher(recorder, max_sentences=7, max_wait=0.2, max_queue=100), requests)
    assert results == [[line.upper() for line in lines] for lines, _ in requests]
    assert [len(lines) for lines, _ in recorder.batches] == [6, 6, 6]


def test_a_request_larger_than_a_batch_is_decoded_alone():
    recorder = Recorder()
    results = _run(Batcher(recorder, max_sentences=2, max_wait=0.05, max_queue=100), [(["a", "b", "c"], {})])
    assert results == [["A", "B", "C"]] and len(recorder.batches) == 1


def test_requests_with_different_options_never_share_a_batch():
    recorder = Recorder()
    requests = [(["a"], {"beam_size": 2}), (["b"], {}), (["c"], {"beam_size": 2}), (["d"], {})]
    results = _run(Batcher(recorder, max_sentences=64, max_wait=0.2, max_queue=100), requests)
    assert results == [["A"], ["B"], ["C"], ["D"]]
    assert sorted((lines, options.get("beam_size")) for lines, options in recorder.batches) == [
        (["a", "c"], 2),
        (["b", "d"], None),
    ]


def test_a_full_queue_refuses_and_an_empty_request_needs_no_worker():
    gate = threading.Event()
    batcher = Batcher(Recorder(gate), max_sentences=64, max_wait=0.0, max_queue=3)

    async def scenario() -> None:
        assert await batcher.submit([], {}) == []
        first = batcher.submit(["a", "b", "c"], {})
        with pytest.raises(QueueFull):
            batcher.submit(["d"], {})
        gate.set()
        assert [t.text for t in await first] == ["A", "B", "C"]

    _on_worker_thread(batcher, scenario)


def test_a_failed_batch_fails_each_of_its_requests():
    def broken(task: str, lines: list[str], options: dict) -> list[Translation]:
        raise RuntimeError("decoder broke")

    batcher = Batcher(broken, max_sentences=64, max_wait=0.1, max_queue=100)

    async def scenario() -> None:
        futures = [batcher.submit(["a"], {}), batcher.submit(["b"], {})]
        for outcome in await asyncio.gather(*futures, return_exceptions=True):
            assert isinstance(outcome, RuntimeError)

    _on_worker_thread(batcher, scenario)


def test_stop_decodes_what_is_queued_then_refuses():
    recorder = Recorder()
    batcher = Batcher(recorder, max_sentences=64, max_wait=10.0, max_queue=100)

    async def scenario() -> None:
        pending = batcher.submit(["late"], {})
        await asyncio.get_running_loop().run_in_executor(None, batcher.stop, 5)
        assert [t.text for t in await pending] == ["LATE"]
        with pytest.raises(QueueFull, match="shutting down"):
            batcher.submit(["x"], {})

    batcher.start()
    asyncio.run(scenario())
    assert not batcher.worker.is_alive()


def test_run_decodes_on_the_calling_thread_until_stopped():
    threads: list[str] = []

    def translate(task: str, lines: list[str], options: dict) -> list[Translation]:
        threads.append(threading.current_thread().name)
        return [Translation(line.upper(), [(line.upper(), 0.0)], [], []) for line in lines]

    batcher = Batcher(translate, max_sentences=64, max_wait=0.05, max_queue=100)
    results: list = []

    def client() -> None:
        async def scenario() -> None:
            results.append([t.text for t in await batcher.submit(["a", "b"], {})])

        asyncio.run(scenario())
        batcher.stop(wait=False)

    other = threading.Thread(target=client, name="client")
    other.start()
    batcher.run()  # returns once the client has stopped it
    other.join(5)
    assert results == [["A", "B"]] and threads == [threading.current_thread().name]


def test_tasks_never_share_a_batch():
    recorder = Recorder()
    batcher = Batcher(recorder, max_sentences=64, max_wait=0.2, max_queue=100)

    async def scenario() -> list:
        futures = [batcher.submit(["a"], {}), batcher.submit(["b"], {}, task="score"), batcher.submit(["c"], {})]
        return [[t.text for t in result] for result in await asyncio.gather(*futures)]

    assert _on_worker_thread(batcher, scenario) == [["A"], ["B"], ["C"]]
    assert sorted(zip(recorder.tasks, [lines for lines, _ in recorder.batches])) == [
        ("score", ["b"]),
        ("translate", ["a", "c"]),
    ]
