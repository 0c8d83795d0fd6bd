"""The HTTP API (FastAPI): POST /v1/translate, POST /v1/score, GET /v1/model, GET /health, and the limits.

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
from s2s.decoding.options import SEARCH_OPTIONS
from s2s.decoding.translator import Score, Translator
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
    max_phrases: int = 16  # constraint and avoided phrases per line; over it, 422
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
    top_p: Optional[float] = Field(
        None, gt=0, le=1, description="sampling: keep the most likely tokens that make up p of the mass (1 = all)"
    )
    seed: Optional[int] = Field(None, description="sampling: a seed makes the request reproducible")
    long_lines: Optional[str] = Field(None, pattern="^(split|truncate)$", description="split | truncate")
    scores: bool = Field(False, description="also return each line's hypotheses with their scores")
    constraints: Optional[list[list[str]]] = Field(
        None, description="per line, phrases the translation must contain (beam search places them)"
    )
    prefix: Optional[list[Optional[str]]] = Field(None, description="per line, text the translation starts with")
    avoid: Optional[list[list[str]]] = Field(None, description="per line, phrases the translation must not contain")


class ScoreRequest(BaseModel):
    """The body of POST /v1/score: pairs of a source line and a given translation of it."""

    model_config = ConfigDict(extra="forbid")
    source: list[str] = Field(description="the source lines")
    target: list[str] = Field(description="one given translation per source line")


class PairScore(BaseModel):
    score: float  # log p(target | source), summed over the target's subwords and EOS
    per_token: float  # score / (subwords + 1)
    pieces: list[str]  # the target's subwords, then '</s>'
    token_scores: list[float]  # each piece's log-probability


class ScoreResponse(BaseModel):
    scores: list[PairScore]
    model: str


@dataclasses.dataclass(frozen=True)
class Line:
    """One line to translate with its constraints (empty: none)."""

    text: str
    constraints: tuple[str, ...] = ()
    prefix: Optional[str] = None
    avoid: tuple[str, ...] = ()


class Hypothesis(BaseModel):
    text: str
    score: float  # the log-probability under the search's length normalization


class TranslateResponse(BaseModel):
    translations: list[str]
    model: str
    n_best: Optional[list[list[Hypothesis]]] = None  # with n_best > 1 or scores: per line, best first
    unmet_constraints: Optional[list[list[str]]] = None  # with constraints: per line, those not placed


def make_app(translator: Translator, card: dict[str, Any], limits: ServeLimits) -> FastAPI:
    """The FastAPI app around one translator, decoding through a Batcher (`app.state.batcher`),
    whose worker the caller runs (`batcher.run()` or `batcher.start()`)."""
    name = str(card.get("name", "s2s"))

    def decode(task: str, lines: list[Any], options: dict[str, Any]) -> list[Any]:
        """On the model's thread: a batch of translate lines (`Line`) or score pairs."""
        if task == "score":
            return translator.score([source for source, _ in lines], [target for _, target in lines])
        per_line = {}
        if any(line.constraints or line.prefix or line.avoid for line in lines):
            per_line = {
                "constraints": [list(line.constraints) for line in lines],
                "prefix": [line.prefix for line in lines],
                "avoid": [list(line.avoid) for line in lines],
            }
        return translator.translate_detailed([line.text for line in lines], **per_line, **options)

    batcher = Batcher(decode, limits.max_batch_sentences, limits.max_wait_ms / 1000, limits.max_queue)

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
        check_lines(request.text, "text", limits)
        options = decoding_options(request, translator, limits)
        lines = request_lines(request, limits)
        translations = await submitted(batcher, lines, options, "translate", limits)
        with_scores = request.scores or (request.n_best or 1) > 1
        constrained = request.constraints is not None
        return TranslateResponse(
            translations=[t.text for t in translations],
            model=name,
            n_best=[[Hypothesis(text=text, score=score) for text, score in t.n_best] for t in translations]
            if with_scores
            else None,
            unmet_constraints=[t.unmet_constraints for t in translations] if constrained else None,
        )

    @app.post("/v1/score", response_model=ScoreResponse)
    async def score_pairs(request: ScoreRequest) -> ScoreResponse:
        """The log-probability of each given target for its source (forced decoding)."""
        if len(request.target) != len(request.source):
            raise _invalid("target", f"{len(request.target)} targets for {len(request.source)} sources")
        check_lines(request.source, "source", limits)
        check_lines(request.target, "target", limits)
        scores: list[Score] = await submitted(batcher, list(zip(request.source, request.target)), {}, "score", limits)
        return ScoreResponse(scores=[PairScore(**dataclasses.asdict(s)) for s in scores], model=name)

    return app


async def submitted(batcher: Batcher, lines: list[Any], options: dict[str, Any], task: str, limits: ServeLimits):
    """The lines' results from the model thread: 503 + Retry-After when the queue is full, 422 for a
    request the translator refuses."""
    try:
        return await batcher.submit(lines, options, task)
    except QueueFull as error:
        raise HTTPException(503, f"busy: {error}; retry later", {"Retry-After": str(limits.retry_after_s)})
    except S2SError as error:
        raise HTTPException(422, str(error)) from None


def request_lines(request: TranslateRequest, limits: ServeLimits) -> list[Line]:
    """The request's lines with their constraints; 422 naming the field when a list does not match the text."""
    count = len(request.text)
    per_line: dict[str, list] = {}
    for key in ("constraints", "prefix", "avoid"):
        values = getattr(request, key)
        if values is None:
            continue
        if len(values) != count:
            raise _invalid(key, f"{len(values)} entries for {count} lines of text; give one per line")
        per_line[key] = values
    if per_line and request.sampling:
        raise _invalid("sampling", "constraints, prefix and avoid need search, not sampling")
    lines = []
    for i, text in enumerate(request.text):
        constraints = tuple(per_line["constraints"][i]) if "constraints" in per_line else ()
        avoid = tuple(per_line["avoid"][i]) if "avoid" in per_line else ()
        if len(constraints) + len(avoid) > limits.max_phrases:
            raise _invalid(
                "constraints",
                f"line {i} has {len(constraints) + len(avoid)} phrases; at most {limits.max_phrases} on this server",
            )
        prefix = per_line["prefix"][i] if "prefix" in per_line else None
        if any(len(p) > limits.max_line_chars for p in (*constraints, *avoid, prefix or "")):
            raise HTTPException(413, f"a phrase of line {i} is over {limits.max_line_chars} characters")
        lines.append(Line(text, constraints, prefix, avoid))
    return lines


def check_lines(lines: list[str], field: str, limits: ServeLimits) -> None:
    """413 for too many lines or a line of too many characters, naming the field."""
    if len(lines) > limits.max_lines:
        raise HTTPException(413, f"{field} has {len(lines)} lines; at most {limits.max_lines} per request")
    for number, line in enumerate(lines):
        if len(line) > limits.max_line_chars:
            raise HTTPException(
                413, f"{field}[{number}] has {len(line)} characters; at most {limits.max_line_chars} per line"
            )


def decoding_options(request: TranslateRequest, translator: Translator, limits: ServeLimits) -> dict[str, Any]:
    """The request's decoding options, checked as the translator checks them (422 naming the field)."""
    options = request.model_dump(exclude={"text", "scores", "constraints", "prefix", "avoid"}, exclude_none=True)
    for key in ("beam_size", "n_best"):
        if options.get(key, 0) > limits.max_beam_size:
            raise _invalid(key, f"at most {limits.max_beam_size} on this server")
    try:
        check_search(
            dataclasses.replace(translator.search, **{k: v for k, v in options.items() if k in SEARCH_OPTIONS})
        )
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
