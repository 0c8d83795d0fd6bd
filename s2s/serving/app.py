"""The HTTP API (FastAPI): POST /v1/translate, GET /v1/model, GET /health, and the limits on every request.

Every error answers with a JSON body (FastAPI's `{"detail": ...}`): 413 for a body, a request or
a line over its limit, 422 for invalid JSON, a wrong type or an option out of range (naming the
field), 503 with Retry-After when the queue is full or the server is shutting down.
"""

from __future__ import annotations

import dataclasses
import json
import re
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Optional

from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from s2s.config_checks import check_search
from s2s.decoding.translator import Translation, Translator
from s2s.errors import S2SError
from s2s.serving.batcher import Batcher, QueueFull


@dataclasses.dataclass
class ServeLimits:
    """The server's bounds; `python -m s2s.serve` sets them from its options."""

    max_batch_sentences: int = 64  # lines decoded together at most
    max_wait_ms: float = 5.0  # how long the worker waits for a batch to fill
    max_queue: int = 2048  # lines queued at most; over it, 503
    max_lines: int = 64  # lines per request; over it, 413
    max_line_chars: int = 2000  # characters per line; over it, 413
    max_body_bytes: int = 1_000_000  # request body; over it, 413
    max_beam_size: int = 16  # beam_size (and n_best) per request; over it, 422
    retry_after_s: int = 1  # the Retry-After of a 503


class TranslateRequest(BaseModel):
    """The body of POST /v1/translate: lines and the per-request decoding options of the Python API."""

    model_config = ConfigDict(extra="forbid")
    text: list[str] = Field(description="the lines to translate; one translation per line, in order")
    beam_size: Optional[int] = Field(None, ge=1, description="1 = greedy search (default: the model's)")
    n_best: Optional[int] = Field(None, ge=1, description="hypotheses returned per line (<= beam_size), with scores")
    length_penalty: Optional[float] = Field(None, ge=0, description="GNMT alpha, beam search only")
    sampling: Optional[bool] = Field(None, description="sample instead of searching")
    temperature: Optional[float] = Field(None, gt=0, description="sampling: softmax temperature")
    top_k: Optional[int] = Field(None, ge=0, description="sampling: keep the k most likely tokens (0 = all)")
    seed: Optional[int] = Field(None, description="sampling: a seed makes the request reproducible")
    long_lines: Optional[str] = Field(None, pattern="^(split|truncate)$", description="split | truncate")
    scores: bool = Field(False, description="also return each line's hypotheses with their scores")


class Hypothesis(BaseModel):
    text: str
    score: float  # the log-probability under the search's length normalization


class TranslateResponse(BaseModel):
    translations: list[str]
    model: str
    n_best: Optional[list[list[Hypothesis]]] = None  # with n_best > 1 or scores: per line, best first


def make_app(translator: Translator, card: dict[str, Any], limits: ServeLimits) -> FastAPI:
    """The FastAPI app around one translator, decoding through a Batcher (`app.state.batcher`),
    whose worker the caller runs (`batcher.run()` or `batcher.start()`)."""
    name = str(card.get("name", "s2s"))

    def translate(lines: list[str], options: dict[str, Any]) -> list[Translation]:
        return translator.translate_detailed(lines, **options)

    batcher = Batcher(translate, limits.max_batch_sentences, limits.max_wait_ms / 1000, limits.max_queue)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        # uvicorn comes here on shutdown once the requests in flight are answered; the worker
        # (`batcher.run` on the serving process's main thread) then ends
        batcher.stop(wait=False)

    app = FastAPI(
        title="s2s translation server",
        version=str(card.get("s2s_version", "")),
        description="Recurrent sequence-to-sequence translation; see docs/serving.md.",
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Any, error: RequestValidationError) -> JSONResponse:
        detail = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in error.errors()]
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Alive, with the batcher's counts: lines waiting, batches decoded, their mean and largest size."""
        stats = batcher.stats
        mean = stats.lines / stats.batches if stats.batches else 0.0
        return {
            "status": "ok",
            "queued_lines": batcher.queued_lines,
            "batches": stats.batches,
            "lines": stats.lines,
            "mean_batch_lines": round(mean, 2),
            "largest_batch_lines": stats.largest,
        }

    @app.get("/v1/model")
    async def model_card() -> dict[str, Any]:
        return {**card, "server_limits": dataclasses.asdict(limits)}

    @app.post("/v1/translate", response_model=TranslateResponse, response_model_exclude_none=True)
    async def translate_lines(request: TranslateRequest) -> TranslateResponse:
        check_request(request, limits)
        options = decoding_options(request, translator, limits)
        try:
            translations = await batcher.submit(request.text, options)
        except QueueFull as error:
            raise HTTPException(503, f"busy: {error}; retry later", {"Retry-After": str(limits.retry_after_s)})
        except S2SError as error:
            raise HTTPException(422, str(error)) from None
        with_scores = request.scores or (request.n_best or 1) > 1
        return TranslateResponse(
            translations=[t.text for t in translations],
            model=name,
            n_best=[[Hypothesis(text=text, score=score) for text, score in t.n_best] for t in translations]
            if with_scores
            else None,
        )

    return app


def check_request(request: TranslateRequest, limits: ServeLimits) -> None:
    """413 for a request of too many lines or a line of too many characters."""
    if len(request.text) > limits.max_lines:
        raise HTTPException(413, f"text has {len(request.text)} lines; at most {limits.max_lines} per request")
    for number, line in enumerate(request.text):
        if len(line) > limits.max_line_chars:
            raise HTTPException(
                413, f"text[{number}] has {len(line)} characters; at most {limits.max_line_chars} per line"
            )


def decoding_options(request: TranslateRequest, translator: Translator, limits: ServeLimits) -> dict[str, Any]:
    """The request's decoding options, checked as the translator checks them (422 naming the field)."""
    options = request.model_dump(exclude={"text", "scores"}, exclude_none=True)
    for key in ("beam_size", "n_best"):
        if options.get(key, 0) > limits.max_beam_size:
            raise _invalid(key, f"at most {limits.max_beam_size} on this server")
    try:
        check_search(dataclasses.replace(translator.search, **{k: v for k, v in options.items() if k != "long_lines"}))
    except S2SError as error:
        named = re.search(r"search\.(\w+)", str(error))
        field = named.group(1) if named else "body"
        raise _invalid(field, str(error)) from None
    return options


def _invalid(field: str, message: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", field], "msg": message, "type": "value_error"}])


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413, whether or not it declares its length."""

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_json(send, 413, {"detail": f"the body has {int(declared)} bytes; at most {self.max_bytes}"})
            return
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:  # FastAPI passes an HTTPException from reading the body on as it is
                    raise HTTPException(413, f"the body has more than {self.max_bytes} bytes")
            return message

        await self.app(scope, limited_receive, send)


async def _send_json(send: Any, status: int, body: dict) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
