"""`python -m s2s.serve --model PATH [--host 127.0.0.1] [--port 8080]`: an HTTP translation server.

Serves one model (a model file from `python -m s2s.export`, a run directory or a checkpoint)
over HTTP with FastAPI on uvicorn: POST /v1/translate, GET /v1/model, GET /health, and the
OpenAPI schema at /docs and /openapi.json. Lines of concurrent requests are decoded together
(dynamic batching) by one model worker. SIGTERM or Ctrl-C stops accepting connections,
answers the requests in flight, and exits 0. docs/serving.md describes the API and its limits.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from s2s.arguments import parse_overrides
from s2s.checkpoint import check_name as check_checkpoint_name
from s2s.errors import S2SError, user_errors_exit

USAGE = (
    __doc__
    + """
Options, as --flag VALUE or key=value:
  --model PATH               model file, run directory or checkpoint (--run is the same; default: the latest run);
                             repeat it to serve an ensemble (--model A --model B)
  --combine probs            probs | log_probs: how an ensemble averages its members' predictions
  --checkpoint best          best | last | averaged | step-N (a run directory only)
  --host 127.0.0.1           the address to listen on (0.0.0.0: every interface)
  --port 8080                the port (0: any free port, printed at start)
  --device auto              auto | cpu | cuda | cuda:N
  --precision fp32           fp32 | bf16 | auto | int8, the decoding precision (as for s2s.translate)
  --threads 0                torch CPU threads (0: torch's default, one per core)
  --max-batch-sentences 64   lines decoded together at most
  --max-wait-ms 5            how long the worker waits for more requests to fill a batch
  --max-queue 2048           lines waiting at most; beyond it requests get 503 with Retry-After
  --max-lines 64             lines per request (413 beyond)
  --max-line-chars 2000      characters per line (413 beyond)
  --max-body-bytes 1000000   request body size (413 beyond)
  --max-beam-size 16         beam_size and n_best per request (422 beyond)
  --max-phrases 16           constraint and avoided phrases per line (422 beyond)
  --shutdown-timeout 30      seconds to finish the requests in flight after SIGTERM
  --access-log               log one line per request (off: at hundreds of requests/s it costs time)
  search.KEY=VALUE           the model's default decoding settings, as for s2s.translate
"""
)


@dataclass
class ServeOptions:
    model: list[str] = field(default_factory=list)  # model file(s), run directory(ies) or checkpoint(s)
    combine: str = "probs"  # an ensemble: mean of probabilities (probs) or of log-probabilities (log_probs)
    checkpoint: str = "best"
    host: str = "127.0.0.1"
    port: int = 8080
    device: str = "auto"
    precision: str = "fp32"
    threads: int = 0
    max_batch_sentences: int = 64
    max_wait_ms: float = 5.0
    max_queue: int = 2048
    max_lines: int = 64
    max_line_chars: int = 2000
    max_body_bytes: int = 1_000_000
    max_beam_size: int = 16
    max_phrases: int = 16
    shutdown_timeout: float = 30.0
    access_log: bool = False


def check_options(options: ServeOptions) -> None:
    check_checkpoint_name(options.checkpoint)
    if not 0 <= options.port <= 65535:
        raise S2SError(f"--port {options.port} must be between 0 and 65535")
    for name in (
        "max_batch_sentences",
        "max_queue",
        "max_lines",
        "max_line_chars",
        "max_body_bytes",
        "max_beam_size",
        "max_phrases",
    ):
        if getattr(options, name) < 1:
            raise S2SError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(options, name)}")
    if options.max_wait_ms < 0 or options.shutdown_timeout < 0 or options.threads < 0:
        raise S2SError("--max-wait-ms, --shutdown-timeout and --threads must not be negative")
    if options.max_queue < options.max_lines:
        raise S2SError(f"--max-queue {options.max_queue} must hold at least one request (--max-lines)")


def serve(options: ServeOptions, search_overrides: list[str]) -> None:
    """Load the model and serve until SIGTERM or Ctrl-C."""
    check_options(options)
    try:
        import uvicorn

        from s2s.serving.app import ServeLimits, make_app
    except ImportError as error:
        raise S2SError(f"the server needs FastAPI and uvicorn ({error.name} is missing): pip install 's2s[serve]'")
    from s2s.commands.export import ExportOptions, model_card
    from s2s.config import config_from_dict
    from s2s.decoding.loading import translator_for
    from s2s.device import pick_device
    from s2s.model_file import read_model

    if options.threads:
        torch.set_num_threads(options.threads)

    device = pick_device(options.device)
    sources = [read_model(path, options.checkpoint, device) for path in options.model or [None]]
    overrides = search_overrides + [f"precision={options.precision}"]
    members = sources if len(sources) > 1 else sources[0]
    translator, cfg, origin = translator_for(members, device, overrides, combine=options.combine)
    name = os.path.basename(os.path.normpath(origin))
    source = sources[0]
    card = dict(source.card) or model_card(name, source, config_from_dict(source.config), ExportOptions())
    card["decoding"] = {"device": str(device), "precision": options.precision}
    if len(sources) > 1:  # the card describes the first member; the ensemble is named here
        card["ensemble"] = {"members": [s.origin for s in sources], "combine": options.combine}
    limits = ServeLimits(**{f.name: getattr(options, f.name) for f in fields(ServeLimits) if hasattr(options, f.name)})
    app = make_app(translator, card, limits)
    logging.getLogger("s2s").info("serving %s (%s -> %s)", origin, cfg.data.src_lang, cfg.data.tgt_lang)
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        log_level="info",
        access_log=options.access_log,
        timeout_graceful_shutdown=options.shutdown_timeout or None,
    )
    run_until_stopped(uvicorn.Server(config), app.state.batcher, f"{options.host}:{options.port}")


def run_until_stopped(server: Any, batcher: Any, address: str) -> None:
    """HTTP on a thread of its own, the model on this one, until SIGTERM or Ctrl-C.

    torch's CPU thread pool slows down when a second thread starts using it, so the model is
    used only by the thread that loaded it. A stop signal makes uvicorn stop accepting
    connections and answer the requests in flight (the model keeps decoding for them); then
    the app's shutdown stops the batcher, whose loop returns once its queue is empty.
    """

    def serve_http() -> None:
        try:
            server.run()
        finally:  # also when uvicorn could not start (the port is taken): the model loop must end too
            batcher.stop(wait=False)

    def stop(signum: int, frame: object) -> None:
        server.force_exit = server.should_exit and signum == signal.SIGINT  # a second Ctrl-C: stop now
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    http = threading.Thread(target=serve_http, name="s2s-http")
    try:
        http.start()
        batcher.run()
        http.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise S2SError(f"the server could not listen on {address} (see the log above)")


# oneDNN (the CPU kernels of the encoder's LSTMs) keeps a compiled kernel for each input shape, 1,024
# by default; the mixed batches of a server make new shapes all the time, so the default lets memory grow
# for hours. 64 keeps it flat at no measured cost in speed (docs/experiments/serving.md).
ONEDNN_CACHE = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault(*ONEDNN_CACHE)  # read when oneDNN first runs, after this; a user's own value wins
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s", stream=sys.stderr)
    with user_errors_exit():
        options, search = parse_overrides(sys.argv[1:] if argv is None else argv, ServeOptions, USAGE)
        serve(options, search)


if __name__ == "__main__":
    main()
