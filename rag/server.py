"""The HTTP door (`rag serve`): the pipeline as an OpenAI-compatible API, with FastAPI and uvicorn.

It converts and nothing more: a chat request becomes a question and history for
`rag.answer` (the same `stream_answer`/`ask` the CLI, the app and the eval call), an ingest
request calls `Engine.ingest`, and the typed `Answer` goes back as a chat completion whose
extension fields (`answer`, `refused`, `refusal_reason`, `citations`, `sentences`,
`support_check`, `notices`, `passages`) carry what the OpenAI schema has no place for. A stream sends
the model's draft as it is written and the extension fields in its final chunk; the final
chunk's `answer` is the text to keep (with [n] markers, or the refusal that replaced the draft).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import threading
import time
import uuid
from collections import deque
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Iterator, Literal

import openai
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.answer import AnswerStream, ask, stream_answer, warm_up
from rag.backends import explain_error
from rag.engine import Engine
from rag.errors import BackendError, ConfigError, CorpusError, IndexStateError, ModelCrashed, QuestionError, RagError
from rag.index import IngestReport
from rag.schema import Answer, Citation, Passage, SentenceCheck, Turn
from rag.settings import ServerSettings, Settings

MODEL = "rag"


# ---- the request and response schema (the OpenAI chat API's, and our extension) ----


class TextPart(BaseModel):
    """A part of a message's content in the list form; only text is understood."""

    type: Literal["text"]
    text: str


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(part.text for part in self.content)
        return self.content or ""


class ChatRequest(BaseModel):
    """An OpenAI chat request. Sampling fields (temperature, max_tokens…) are ignored: the settings decide them."""

    model_config = ConfigDict(extra="ignore")

    model: str = MODEL
    messages: list[MessageIn] = Field(min_length=1)
    stream: bool = False


class Grounded(BaseModel):
    """The extension fields: what makes the answer grounded, from the pipeline's Answer."""

    answer: str = Field(description="The final answer: text with [n] markers, or the refusal. When streaming, the deltas "
                        "were the model's draft and this is the text to keep.")
    refused: bool
    refusal_reason: str | None = None
    citations: list[Citation] = Field(default_factory=list)
    sentences: list[SentenceCheck] = Field(default_factory=list, description="Each answer sentence's support state.")
    support_check: str = ""
    notices: list[str] = Field(default_factory=list)
    passages: list[Passage] = Field(default_factory=list, description="The numbered passages the answer was drawn from: "
                                    "what [n] refers to, cited or not.")

    @classmethod
    def of(cls, answer: Answer) -> dict[str, Any]:
        """The Answer's values of these fields, to build a response with."""
        return {name: getattr(answer, name) for name in Grounded.model_fields}


class MessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: MessageOut
    finish_reason: Literal["stop"] = "stop"


class _Envelope(BaseModel):
    """What every completion object carries."""

    id: str
    created: int
    model: str = MODEL


class ChatCompletion(_Envelope, Grounded):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[Choice]


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop"] | None = None


class Chunk(_Envelope):
    """One `chat.completion.chunk`."""

    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChunkChoice]


class FinalChunk(Chunk, Grounded):
    """The last chunk of a stream: no text, finish_reason "stop", and the extension fields."""


class ModelCard(BaseModel):
    id: str = MODEL
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "rag"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class IngestRequest(BaseModel):
    rebuild: bool = Field(False, description="Drop the index first (the documents are not touched).")


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


# ---- errors: every failure is an OpenAI-style JSON body with its status, never a traceback ----


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers or {}

    def body(self) -> ErrorBody:
        return ErrorBody(error=ErrorDetail(message=self.message, type=self.type, param=self.param, code=self.code))

    def response(self) -> JSONResponse:
        return JSONResponse(self.body().model_dump(), status_code=self.status, headers=self.headers)


_DOWN = (openai.APIConnectionError, ConnectionError, TimeoutError)


def api_error(exc: Exception) -> ApiError:
    """The status an error gets: the caller's mistake 400, the server's corpus or index 409, an LLM
    that is down or restarting 503, one that fails otherwise 502, anything else 500 (without details)."""
    if isinstance(exc, ApiError):
        return exc
    if not isinstance(exc, RagError):
        return ApiError(500, f"Internal error ({type(exc).__name__}); the server log has the details.", "server_error")
    message = str(exc)
    if isinstance(exc, QuestionError):
        return ApiError(400, message, param="messages")
    if isinstance(exc, (CorpusError, IndexStateError)):
        return ApiError(409, message, "index_error")
    if isinstance(exc, ModelCrashed) or (isinstance(exc, BackendError) and _caused_by(exc, _DOWN)):
        return ApiError(503, message, "backend_unavailable", headers={"Retry-After": "5"})
    if isinstance(exc, BackendError):
        return ApiError(502, message, "backend_error")
    return ApiError(500, message, "server_error")


def _caused_by(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, kinds):
            return True
        cause = cause.__cause__
    return False


def _install_error_handlers(app: FastAPI) -> None:
    async def on_error(_: Request, exc: Exception) -> JSONResponse:
        return api_error(exc).response()

    async def on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first["loc"] if part != "body") or None
        message = "The body is not valid JSON." if first.get("type") == "json_invalid" else f"{where or 'body'}: {first['msg']}"
        return ApiError(400, message, param=where).response()

    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return ApiError(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}").response()

    for kind in (ApiError, RagError, Exception):
        app.add_exception_handler(kind, on_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(StarletteHTTPException, on_http)


# ---- what a request must pass: size, key, rate ----


class RequestGuard:
    """Answers 413 to a body over the limit before the app sees it, and marks every response
    `nosniff` (the API's text is JSON, never markup for a browser to guess at).

    Written here because neither Starlette nor uvicorn bounds a request body; the body is read
    (up to the limit) and replayed, so a chunked upload without Content-Length is bounded too.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body, send = await self._read(scope, receive), _nosniff(send)
        if body is None:
            too_large = ApiError(413, f"The request body is larger than {self.limit:,} bytes (server.max_request_bytes).",
                                 code="request_too_large")
            await too_large.response()(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, scope: Scope, receive: Receive) -> bytes | None:
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.limit:
            return None
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return None
        return body


def _replay(body: bytes, receive: Receive) -> Receive:
    """The app reads the buffered body once, then the real channel (a streaming response listens for a disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def _nosniff(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message.setdefault("headers", []).append((b"x-content-type-options", b"nosniff"))
        await send(message)

    return sending


class RateLimiter:
    """At most `per_minute` requests per caller in any 60 seconds (a sliding log of request times).

    Written here rather than taken from slowapi/limits: a dozen lines, no new dependency, and a
    limit kept in memory is per replica whichever is used.
    """

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute, self.clock = per_minute, clock
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def wait_s(self, caller: str) -> float:
        """0 and the request is counted; otherwise the seconds until the caller may send again."""
        if not self.per_minute:
            return 0.0
        now = self.clock()
        with self._lock:
            seen = self._seen.setdefault(caller, deque())
            while seen and seen[0] <= now - 60:
                seen.popleft()
            if len(seen) >= self.per_minute:
                return seen[0] + 60 - now
            seen.append(now)
            return 0.0


def api_keys(server: ServerSettings) -> list[str]:
    """The keys from the settings (RAG_SERVER_API_KEYS) and from server.api_keys_file, one a line."""
    keys = [key.get_secret_value() for key in server.api_keys]
    if server.api_keys_file is not None:
        try:
            lines = server.api_keys_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"server.api_keys_file {server.api_keys_file}: cannot read it ({exc}).") from exc
        from_file = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not from_file:
            raise ConfigError(f"server.api_keys_file {server.api_keys_file} holds no key (one a line).")
        keys += from_file
    return keys


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name could resolve anywhere
        return False


def check_exposure(server: ServerSettings, keys: list[str]) -> None:
    """Refuse to listen beyond this machine without keys: anyone on the network could ask and re-index."""
    if not keys and not is_loopback(server.host):
        raise ConfigError(
            f"Refusing to listen on {server.host} without API keys: any machine that reaches it could use it. "
            "Set RAG_SERVER_API_KEYS=key1,key2 (or server.api_keys_file), or listen on 127.0.0.1."
        )


def _known(given: str, keys: list[str]) -> bool:
    """Compared in constant time with every key, so timing tells nothing about any of them."""
    matches = [hmac.compare_digest(given.encode(), key.encode()) for key in keys]
    return any(matches)


# ---- readiness: the LLM loads in the background; questions wait for it ----


class Readiness:
    """Loads the LLM (and caches the fixed prompt) in a thread at start-up, so /healthz answers at
    once and /readyz turns 200 when questions can be answered; after a failure the next probe retries."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.error: str | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self._done.is_set()

    def start(self) -> None:
        with self._lock:
            if not self.ready and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._load, name="rag-load-llm", daemon=True)
                self._thread.start()

    def _load(self) -> None:
        try:
            warm_up(self.engine)
        except RagError as exc:
            self.error = str(exc)
        except Exception as exc:  # a backend's own error type: named, and retried on the next probe
            self.error = explain_error(exc, "the LLM backend")
        else:
            self.error = None
            self._done.set()

    def require(self) -> None:
        """Raise 503 until the model is loaded (starting a new attempt after a failed one)."""
        if self.ready:
            return
        failed = self.error
        self.start()
        message = f"The LLM could not be loaded: {failed}" if failed else "The model is still loading; retry in a few seconds."
        raise ApiError(503, message, "backend_unavailable", code="model_not_ready", headers={"Retry-After": "5"})


# ---- the app ----


class Door:
    """What the endpoints share: the engine, the limits and the conversion of Answers."""

    def __init__(self, engine: Engine, settings: Settings, keys: list[str]) -> None:
        self.engine, self.settings, self.keys = engine, settings, keys
        self.readiness = Readiness(engine)
        self.limiter = RateLimiter(settings.server.rate_limit_per_minute)
        self.started = int(time.time())
        self.slots: asyncio.Semaphore | None = None  # made in the server's event loop (lifespan)

    def conversation(self, request: ChatRequest) -> tuple[str, list[Turn]]:
        """The last message is the user's question; earlier user and assistant messages are the history
        (system and tool messages are left out: the pipeline's prompt is fixed)."""
        if request.model != MODEL:
            raise ApiError(404, f"The model '{request.model}' does not exist; this server serves '{MODEL}'.",
                           param="model", code="model_not_found")
        turns = [Turn(role=m.role, content=m.text()) for m in request.messages if m.role in ("user", "assistant")]
        if not turns or turns[-1].role != "user":
            raise ApiError(400, "The conversation must end with a user message: the question.", param="messages")
        question, limit = turns[-1].content, self.settings.answer.max_question_chars
        if len(question) > limit:
            raise ApiError(400, f"The question is {len(question):,} characters long; at most {limit:,} are accepted "
                           "(answer.max_question_chars).", param="messages", code="question_too_long")
        return question, turns[:-1]

    def authorize(self, credentials: HTTPAuthorizationCredentials | None) -> None:
        """When keys are set: a valid one (401 otherwise) within its rate (429)."""
        if not self.keys:
            return
        if credentials is None or not _known(credentials.credentials, self.keys):
            raise ApiError(401, "Missing or invalid API key: send `Authorization: Bearer <key>`.",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        wait = self.limiter.wait_s(credentials.credentials)
        if wait:
            raise ApiError(429, f"Rate limit of {self.limiter.per_minute} requests a minute reached; retry in {wait:.0f} s.",
                           "rate_limit_error", code="rate_limit_exceeded", headers={"Retry-After": str(int(wait) + 1)})

    async def complete(self, question: str, history: list[Turn]) -> ChatCompletion:
        assert self.slots is not None
        async with self.slots:
            answer = await run_in_threadpool(ask, self.engine, question, history)
        return ChatCompletion(id=_completion_id(), created=int(time.time()), choices=[Choice(message=MessageOut(content=answer.answer))],
                              **Grounded.of(answer))

    async def stream(self, question: str, history: list[Turn]) -> StreamingResponse:
        """The first delta is computed before the response starts, so early errors (no documents, the LLM
        down) still get their status; a later one travels as an error event, as OpenAI's API sends them."""
        assert self.slots is not None
        await self.slots.acquire()
        try:
            answering = stream_answer(self.engine, question, history)
            deltas = iter(answering)
            first = await run_in_threadpool(next, deltas, None)
        except BaseException:
            self.slots.release()
            raise
        events = _events(answering, deltas, first, _completion_id())
        return _ClosingStream(_released(events, deltas, self.slots.release), media_type="text/event-stream")


class _ClosingStream(StreamingResponse):
    """Closes its event generator however the response ends. A client that leaves mid-stream stops
    Starlette at a `send`, where the generator is only suspended: without this it would hold the
    model's lock and its slot until garbage collection got to it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _sse(data: BaseModel) -> str:
    return f"data: {data.model_dump_json()}\n\n"


def _chunk(cid: str, created: int, delta: Delta) -> Chunk:
    return Chunk(id=cid, created=created, choices=[ChunkChoice(delta=delta)])


async def _events(answering: AnswerStream, deltas: Iterator[str], first: str | None, cid: str) -> AsyncIterator[str]:
    """The draft's deltas, then (when the draft was withheld) the refusal as a last delta for plain
    clients, then the final chunk with the extension fields, then [DONE]."""
    created = int(time.time())
    yield _sse(_chunk(cid, created, Delta(role="assistant", content="")))
    try:
        if first is not None:
            yield _sse(_chunk(cid, created, Delta(content=first)))
        async for delta in iterate_in_threadpool(deltas):
            yield _sse(_chunk(cid, created, Delta(content=delta)))
    except Exception as exc:  # the status line is sent: the error goes as an event
        yield _sse(api_error(exc).body())
        return
    answer = answering.answer
    assert answer is not None
    if note := answer.withheld_note():
        yield _sse(_chunk(cid, created, Delta(content=f"\n\n{note}")))
    final = ChunkChoice(delta=Delta(), finish_reason="stop")
    yield _sse(FinalChunk(id=cid, created=created, choices=[final], **Grounded.of(answer)))
    yield "data: [DONE]\n\n"


async def _released(events: AsyncIterator[str], deltas: Iterator[str], release: Callable[[], None]) -> AsyncIterator[str]:
    """Whether the stream ends or the client goes away, the answer's generator is closed (it lets go of
    the model's lock) and its slot is given back."""
    try:
        async for event in events:
            yield event
    finally:
        close = getattr(deltas, "close", None)
        if callable(close):
            close()
        release()


def create_app(engine: Engine, settings: Settings) -> FastAPI:
    """The API over an already built engine (tests pass one with a fake LLM)."""
    keys = api_keys(settings.server)
    check_exposure(settings.server, keys)
    door = Door(engine, settings, keys)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        door.slots = asyncio.Semaphore(settings.server.max_concurrent)
        door.readiness.start()
        yield

    app = FastAPI(title="rag", version="1", lifespan=lifespan,
                  description="Grounded, cited answers over a document folder, through the OpenAI chat API. "
                  "Responses add `answer`, `refused`, `refusal_reason`, `citations`, `sentences`, `support_check`, `notices`, `passages`.")
    app.state.door = door
    _install_error_handlers(app)
    app.add_middleware(RequestGuard, limit=settings.server.max_request_bytes)
    app.include_router(_v1(door))
    _health(app, door)
    return app


_ERRORS = {code: {"model": ErrorBody} for code in (400, 401, 404, 409, 413, 429, 502, 503)}


def _v1(door: Door) -> APIRouter:
    bearer = HTTPBearer(auto_error=False)

    async def authorized(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        door.authorize(credentials)

    router = APIRouter(prefix="/v1", dependencies=[Depends(authorized)], responses=_ERRORS)

    @router.post("/chat/completions", response_model=ChatCompletion,
                 summary="Answer the last user message from the documents (stream: server-sent chunks)")
    async def chat_completions(request: ChatRequest) -> Any:
        question, history = door.conversation(request)
        door.readiness.require()
        if request.stream:
            return await door.stream(question, history)
        return await door.complete(question, history)

    @router.get("/models", response_model=ModelList, summary="The pipeline, as one model")
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(created=door.started)])

    @router.post("/ingest", response_model=IngestReport, summary="Re-index the corpus folder incrementally")
    async def ingest(request: IngestRequest | None = None) -> IngestReport:
        return await run_in_threadpool(door.engine.ingest, rebuild=bool(request and request.rebuild))

    return router


def _health(app: FastAPI, door: Door) -> None:
    @app.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="The models are loaded: 200, else 503")
    async def readyz() -> JSONResponse:
        if door.readiness.ready:
            return JSONResponse({"status": "ready", "llm": door.engine.backend.llm})
        door.readiness.start()
        status = "failed" if door.readiness.error else "loading"
        return JSONResponse({"status": status, "error": door.readiness.error}, status_code=503)


def serve(engine: Engine, settings: Settings) -> None:
    """Run the API with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(engine, settings), host=settings.server.host, port=settings.server.port, log_level="info")
