"""Load test of the HTTP server on loopback: throughput, latency and exactness under concurrent clients.

    python -m scripts.load_test --model model.s2s [--clients 1,8,32] [--requests 2000] [--batch-lines 1,4]
                                [--max-seconds 120] [--data-dir DIR] [--threads 2]

First decodes the test2016 sources offline in this process, as the reference: batched
(`Translator.translate` of all lines: sentences/s) and one sentence at a time (batch-1
latency). Then starts `python -m s2s.serve` on a free 127.0.0.1 port and, for each number of
concurrent clients and each request size, sends requests of consecutive test2016 lines (one
keep-alive connection per client) until `--requests` requests are answered or `--max-seconds`
pass. Each response is compared with the offline output of the same lines: a response that
holds the right lines in another order counts as reordered, any other difference as
mismatched, a failed request as an error, a request never answered as lost. The server's RSS
is sampled through the run. Greedy search, the model's own settings otherwise. Prints a table;
the last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.load_test", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="model file, run directory or checkpoint")
    parser.add_argument("--data-dir", default=os.path.join(ROOT, "..", "shared", "data", "multi30k"))
    parser.add_argument("--source-file", default="test_2016_flickr.de", help="file of source lines in --data-dir")
    parser.add_argument("--clients", default="1,8,32", help="numbers of concurrent clients, comma-separated")
    parser.add_argument("--batch-lines", default="1,4", help="lines per request, comma-separated")
    parser.add_argument("--requests", type=int, default=2000, help="requests per configuration (at most)")
    parser.add_argument("--max-seconds", type=float, default=120, help="time per configuration (at most)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, offline and in the server")
    parser.add_argument("--b1-sentences", type=int, default=200, help="sentences for offline batch-1 latency")
    parser.add_argument("--server-option", action="append", default=[], help="passed to s2s.serve (repeatable)")
    return parser.parse_args(argv)


def offline_reference(args: argparse.Namespace, lines: list[str]) -> tuple[list[str], dict]:
    """The offline outputs of every line (batched) and the offline speeds."""
    import torch

    import s2s

    torch.set_num_threads(args.threads)
    translator = s2s.load(args.model, device="cpu")
    translator.translate(lines[:128])  # warm-up
    started = time.perf_counter()
    outputs = translator.translate(lines)
    batched = len(lines) / (time.perf_counter() - started)
    latencies = []
    for line in lines[: args.b1_sentences]:
        started = time.perf_counter()
        translator.translate([line])
        latencies.append(time.perf_counter() - started)
    speeds = {
        "offline_batched_sent_per_s": round(batched, 1),
        "offline_b1_p50_ms": round(1000 * statistics.median(latencies), 2),
        "offline_b1_sent_per_s": round(len(latencies) / sum(latencies), 1),
    }
    return outputs, speeds


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(args: argparse.Namespace, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "s2s.serve", "--model", args.model, "--port", str(port), "--device", "cpu"]
    command += ["--threads", str(args.threads), *args.server_option]
    server = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.poll() is None:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.3)
    server.kill()
    raise SystemExit("error: the server did not start within 120 s")


def server_health(port: int) -> dict:
    """GET /health: the server's batch counts."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/health")
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Load:
    """One configuration: `clients` threads sending requests of `size` lines until the count or time is up."""

    def __init__(self, port: int, lines: list[str], expected: list[str], clients: int, size: int, args, pid: int):
        self.pid = pid
        self.rss: list[float] = []
        self.port, self.lines, self.expected, self.clients, self.size = port, lines, expected, clients, size
        self.limit, self.deadline = args.requests, time.monotonic() + args.max_seconds
        self.lock = threading.Lock()
        self.sent = self.answered = self.errors = self.mismatched = self.reordered = 0
        self.latencies: list[float] = []

    def next_request(self) -> int | None:
        with self.lock:
            if self.sent >= self.limit or time.monotonic() > self.deadline:
                return None
            self.sent += 1
            return self.sent - 1

    def client(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while (number := self.next_request()) is not None:
            start = (number * self.size) % (len(self.lines) - self.size)
            body = json.dumps({"text": self.lines[start : start + self.size]})
            began = time.perf_counter()
            try:
                connection.request("POST", "/v1/translate", body=body, headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException):
                with self.lock:
                    self.errors += 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                continue
            took = time.perf_counter() - began
            self.record(response.status, payload, self.expected[start : start + self.size], took)
        connection.close()

    def record(self, status: int, payload: bytes, expected: list[str], took: float) -> None:
        with self.lock:
            if status != 200:
                self.errors += 1
                return
            self.answered += 1
            self.latencies.append(took)
            got = json.loads(payload)["translations"]
            if got != expected:
                if sorted(got) == sorted(expected):
                    self.reordered += 1
                else:
                    self.mismatched += 1

    def run(self) -> dict:
        threads = [threading.Thread(target=self.client, daemon=True) for _ in range(self.clients)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads) and time.monotonic() < self.deadline + 60:
            self.rss.append(rss_mb(self.pid))
            for thread in threads:
                thread.join(1.0 / len(threads))
        seconds = time.perf_counter() - began
        latencies = sorted(self.latencies) or [float("nan")]

        def percentile(p: float) -> float:
            return round(1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2)

        return {
            "clients": self.clients,
            "lines_per_request": self.size,
            "requests": self.answered,
            "requests_per_s": round(self.answered / seconds, 1),
            "sent_per_s": round(self.answered * self.size / seconds, 1),
            "p50_ms": percentile(0.50),
            "p95_ms": percentile(0.95),
            "p99_ms": percentile(0.99),
            "errors": self.errors,
            "lost": self.sent - self.answered - self.errors,
            "reordered": self.reordered,
            "mismatched": self.mismatched,
            "server_rss_mb_first_max_last": [round(m, 1) for m in (self.rss[0], max(self.rss), self.rss[-1])]
            if self.rss
            else None,
            "server_rss_mb_every_10_s": [round(m, 1) for m in self.rss[::10]],
        }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    path = os.path.join(args.data_dir, args.source_file)
    if not os.path.isfile(path):
        raise SystemExit(f"error: {path} does not exist (give --data-dir)")
    with open(path, encoding="utf-8") as file:
        lines = [line.rstrip("\n") for line in file]
    expected, offline = offline_reference(args, lines)
    print(json.dumps(offline), flush=True)
    port = free_port()
    server = start_server(args, port)
    memory = [rss_mb(server.pid)]
    results = []
    try:
        for clients in [int(c) for c in args.clients.split(",")]:
            for size in [int(s) for s in args.batch_lines.split(",")]:
                before = server_health(port)
                result = Load(port, lines, expected, clients, size, args, server.pid).run()
                after = server_health(port)
                batches = after["batches"] - before["batches"]
                result["mean_batch_lines"] = round((after["lines"] - before["lines"]) / max(batches, 1), 2)
                memory.append(rss_mb(server.pid))
                results.append(result)
                print(json.dumps(result), flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        exit_code = server.wait(60)
    header = f"{'clients':>7} {'lines':>5} {'requests':>8} {'req/s':>7} {'sent/s':>7} {'p50 ms':>7} {'p95 ms':>7}"
    print(header + f" {'p99 ms':>7} {'errors':>6} {'lost':>4} {'reord':>5} {'mismatch':>8}")
    for r in results:
        print(
            f"{r['clients']:>7} {r['lines_per_request']:>5} {r['requests']:>8} {r['requests_per_s']:>7} "
            f"{r['sent_per_s']:>7} {r['p50_ms']:>7} {r['p95_ms']:>7} {r['p99_ms']:>7} {r['errors']:>6} "
            f"{r['lost']:>4} {r['reordered']:>5} {r['mismatched']:>8}"
        )
    summary = {
        **offline,
        "server_rss_mb": [round(m, 1) for m in memory],
        "server_exit_code": exit_code,
        "runs": results,
    }
    print(f"offline: {offline}; server RSS MB after each configuration: {summary['server_rss_mb']}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
