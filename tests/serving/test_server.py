"""The HTTP server end to end: a real `python -m s2s.serve` on a free loopback port, spoken to over HTTP.

Outputs are checked against the same model decoding offline; every bound answers with its status
and a JSON body; concurrent clients get their own lines in order; SIGTERM answers what is in flight
and exits 0."""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import s2s
from s2s.commands.export import ExportOptions, export
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

LINES = ["3 March 1998", "Dienstag, 9. November 1989", "", "12/25/2001", "1 janvier 2000", "a\x00b\u2028c", "   "]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`python -m s2s.serve` in a subprocess, until stopped; `request` talks to it."""

    def __init__(self, model: str, *options: str):
        self.port = free_port()
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        command = [sys.executable, "-m", "s2s.serve", "--model", model, "--port", str(self.port), "--device", "cpu"]
        self.process = subprocess.Popen(
            [*command, "--threads", "1", *options], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited: {self.process.stderr.read()[-2000:]}")
            try:
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError("the server did not answer /health within 60 s")

    def request(self, method: str, path: str, body: object = None, raw: bytes | None = None, headers=None):
        """(status, headers, parsed JSON body) of one request on a fresh connection."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
            connection.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
            response = connection.getresponse()
            payload = response.read()
            return response.status, dict(response.getheaders()), json.loads(payload) if payload else None
        finally:
            connection.close()

    def translate(self, body: object) -> tuple[int, dict]:
        status, _, answer = self.request("POST", "/v1/translate", body)
        return status, answer

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@pytest.fixture(scope="module")
def model_file(trained_run, tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("serve") / "dates.s2s")
    export(ExportOptions(model=trained_run, out=path, scores=False, device="cpu"), [], log=io.StringIO())
    return path


@pytest.fixture(scope="module")
def offline(model_file):
    return s2s.load(model_file, device="cpu")


@pytest.fixture(scope="module")
def server(model_file):
    running = Server(model_file, "--max-lines", "8", "--max-line-chars", "200", "--max-body-bytes", "4000")
    yield running
    assert running.stop() == 0


def test_one_translation_per_line_in_order_as_offline(server, offline):
    status, answer = server.translate({"text": LINES})
    assert status == 200 and answer["model"] == "dates"
    assert answer["translations"] == offline.translate(LINES)
    assert answer["translations"][2] == "" and "n_best" not in answer


def test_n_best_with_scores_as_offline(server, offline):
    status, answer = server.translate({"text": LINES[:2], "beam_size": 3, "n_best": 2})
    assert status == 200
    expected = offline.translate_detailed(LINES[:2], beam_size=3, n_best=2)
    assert answer["translations"] == [t.text for t in expected]
    for got, want in zip(answer["n_best"], expected):
        assert [h["text"] for h in got] == [text for text, _ in want.n_best]
        assert [h["score"] for h in got] == pytest.approx([score for _, score in want.n_best], abs=1e-4)


def test_concurrent_clients_each_get_their_own_lines(server, offline):
    pool = [
        f"{day} {month} {year}"
        for day, month, year in zip(range(1, 29), ["March", "May", "June", "July"] * 7, range(1970, 1998))
    ]
    expected = dict(zip(pool, offline.translate(pool)))
    failures: list[str] = []

    def client(number: int) -> None:
        for request in range(6):
            lines = [pool[(number * 7 + request * 3 + k) % len(pool)] for k in range(1 + (number + request) % 4)]
            status, answer = server.translate({"text": lines})
            if status != 200 or answer["translations"] != [expected[line] for line in lines]:
                failures.append(f"client {number} request {request}: {status} {answer}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []


def test_health_card_and_openapi(server):
    health = server.request("GET", "/health")[2]
    assert health["status"] == "ok" and health["batches"] >= 1 and health["largest_batch_lines"] >= 1
    card = server.request("GET", "/v1/model")[2]
    assert card["name"] == "dates" and card["source_lang"] == "text" and card["server_limits"]["max_lines"] == 8
    schema = server.request("GET", "/openapi.json")[2]
    assert "/v1/translate" in schema["paths"] and "TranslateRequest" in json.dumps(schema)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"text": "not a list"}, ["body", "text"]),
        ({"text": ["fine", 3]}, ["body", "text", 1]),
        ({"txt": ["typo"]}, ["body", "txt"]),
        ({"text": ["x"], "beam_size": 0}, ["body", "beam_size"]),
        ({"text": ["x"], "beam_size": 17}, ["body", "beam_size"]),
        ({"text": ["x"], "beam_size": 2, "n_best": 3}, ["body", "n_best"]),
        ({"text": ["x"], "long_lines": "wrap"}, ["body", "long_lines"]),
    ],
)
def test_invalid_requests_get_422_naming_the_field(server, body, field):
    status, answer = server.translate(body)
    assert status == 422
    assert field in [error["loc"] for error in answer["detail"]]


def test_invalid_json_gets_422(server):
    status, _, answer = server.request("POST", "/v1/translate", raw=b'{"text": [')
    assert status == 422 and answer["detail"][0]["type"] == "json_invalid"


def test_requests_over_their_bounds_get_413(server):
    status, answer = server.translate({"text": ["x"] * 9})
    assert status == 413 and "at most 8 per request" in answer["detail"]
    status, answer = server.translate({"text": ["ok", "y" * 201]})
    assert status == 413 and "text[1]" in answer["detail"]
    status, _, answer = server.request("POST", "/v1/translate", {"text": ["z" * 150] * 30})
    assert status == 413 and "at most 4000" in answer["detail"]


def test_a_chunked_body_over_the_bound_gets_413(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    body = json.dumps({"text": ["w" * 100] * 60}).encode()
    connection.request(
        "POST",
        "/v1/translate",
        body=iter([body[i : i + 500] for i in range(0, len(body), 500)]),
        headers={"Content-Type": "application/json"},
        encode_chunked=True,
    )
    response = connection.getresponse()
    assert response.status == 413 and "4000" in json.loads(response.read())["detail"]
    connection.close()


def test_a_full_queue_gets_503_with_retry_after(model_file):
    slow = Server(model_file, "--max-wait-ms", "3000", "--max-queue", "4", "--max-lines", "4")
    try:
        first: list = []
        waiting = threading.Thread(target=lambda: first.append(slow.translate({"text": LINES[:4]})))
        waiting.start()
        time.sleep(1.0)  # the first request now waits in the queue for its batch to fill
        status, headers, answer = slow.request("POST", "/v1/translate", {"text": ["one more"]})
        assert status == 503 and headers["retry-after"] == "1" and "busy" in answer["detail"]
        waiting.join(30)
        assert first[0][0] == 200 and len(first[0][1]["translations"]) == 4
    finally:
        assert slow.stop() == 0


def test_sigterm_answers_the_requests_in_flight_and_exits_0(model_file, offline):
    draining = Server(model_file, "--max-wait-ms", "2000")
    answers: list = []
    waiting = threading.Thread(target=lambda: answers.append(draining.translate({"text": LINES})))
    waiting.start()
    time.sleep(0.7)  # in the queue, waiting for its batch to fill
    draining.process.send_signal(signal.SIGTERM)
    waiting.join(30)
    assert draining.process.wait(30) == 0
    assert answers and answers[0][0] == 200 and answers[0][1]["translations"] == offline.translate(LINES)
    with pytest.raises(OSError):
        draining.request("GET", "/health")


def test_a_bad_model_path_exits_2_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "s2s.serve", "--model", str(tmp_path / "missing.s2s"), "--port", str(free_port())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith("error: ")


# ---------------------------------------------------------------- constraints, scoring, top-p, ensembles

CONSTRAINED = {
    "text": ["3 March 1998", "Dienstag, 9. November 1989", "12/25/2001"],
    "constraints": [["1998"], [], ["2001"]],
    "prefix": [None, "19", None],
    "avoid": [[], [], ["12"]],
    "beam_size": 3,
}


def test_constraints_prefix_and_avoid_as_offline(server, offline):
    status, answer = server.translate(CONSTRAINED)
    assert status == 200
    per_line = {key: CONSTRAINED[key] for key in ("constraints", "prefix", "avoid")}
    expected = offline.translate_detailed(CONSTRAINED["text"], beam_size=3, **per_line)
    assert answer["translations"] == [t.text for t in expected]
    assert answer["unmet_constraints"] == [t.unmet_constraints for t in expected]
    assert "1998" in answer["translations"][0] and answer["translations"][1].startswith("19")
    assert "12" not in answer["translations"][2].split("-")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"text": ["x", "y"], "constraints": [["a"]]}, ["body", "constraints"]),
        ({"text": ["x"], "prefix": ["a", "b"]}, ["body", "prefix"]),
        ({"text": ["x"], "avoid": "a"}, ["body", "avoid"]),
        ({"text": ["x"], "constraints": [["a"]], "sampling": True}, ["body", "sampling"]),
        ({"text": ["x"], "sampling": True, "top_p": 0}, ["body", "top_p"]),
        ({"text": ["x"], "constraints": [["p"] * 17]}, ["body", "constraints"]),
    ],
)
def test_invalid_constraints_and_top_p_get_422_naming_the_field(server, body, field):
    status, answer = server.translate(body)
    assert status == 422
    assert field in [error["loc"] for error in answer["detail"]]


def test_top_p_sampling_with_a_seed_as_offline(server, offline):
    status, answer = server.translate({"text": LINES[:2], "sampling": True, "top_p": 0.8, "seed": 3})
    assert status == 200
    assert answer["translations"] == offline.translate(LINES[:2], sampling=True, top_p=0.8, seed=3)


def test_score_endpoint_as_offline(server, offline):
    sources, targets = LINES[:2], ["1998-03-03", ""]
    status, _, answer = server.request("POST", "/v1/score", {"source": sources, "target": targets})
    assert status == 200 and answer["model"] == "dates"
    expected = offline.score(sources, targets)
    assert [s["score"] for s in answer["scores"]] == pytest.approx([s.score for s in expected], abs=1e-4)
    assert [s["pieces"] for s in answer["scores"]] == [s.pieces for s in expected]
    status, _, answer = server.request("POST", "/v1/score", {"source": ["a", "b"], "target": ["a"]})
    assert status == 422 and ["body", "target"] in [e["loc"] for e in answer["detail"]]
    status, _, answer = server.request("POST", "/v1/score", {"source": ["a"] * 9, "target": ["a"] * 9})
    assert status == 413 and "source has 9 lines" in answer["detail"]


def test_an_ensemble_server_translates_as_the_offline_ensemble(model_file, trained_run):
    running = Server(model_file, "--model", trained_run, "--combine", "log_probs")
    try:
        status, answer = running.translate({"text": LINES, "beam_size": 3})
        assert status == 200
        ensemble = s2s.load([model_file, trained_run], device="cpu", combine="log_probs")
        assert answer["translations"] == ensemble.translate(LINES, beam_size=3)
        card = running.request("GET", "/v1/model")[2]
        assert card["ensemble"] == {"members": [model_file, trained_run], "combine": "log_probs"}
    finally:
        assert running.stop() == 0
