"""The embedded GGUF model in a supervised child process: a model crash is an error, not an outage.

Why our own code: llama.cpp runs native code inside the process that loads it, so a SIGSEGV
(ggml's AMX kernels on virtualised AMX CPUs, llama.cpp #20824), a SIGILL, an abort or an
out-of-memory kill there ends the Streamlit server, `rag chat` or `rag eval` with it.
LlamaIndex's LlamaCPP has no out-of-process mode; llama-cpp-python's server would add a port,
HTTP and a second prompt-formatting path. Here the child runs LlamaIndex's LlamaCPP exactly as
before (same prompts, same KV-cache reuse of the fixed prefix) and streams each token back over a
socket pair; the parent, `LocalModel`, is a LlamaIndex LLM like every other backend. When the
child dies, the parent says how, keeps no half state, and starts a new child in the background.

Run as `python -m rag.worker FD`: FD is the child's end of the socket pair.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Iterator, Sequence

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from pydantic import PrivateAttr

from rag.errors import BackendError, ModelCrashed
from rag.settings import LLMSettings

LOAD_TIMEOUT_S = 600.0  # a cold 1.1 GB model read from a slow disk; a load that hangs longer is an error
CRASH_WINDOW_S = 300.0
MAX_CRASHES = 3  # in the window: past this the model is not restarted until the next question


def _wire(messages: Sequence[ChatMessage]) -> list[tuple[str, str]]:
    return [(m.role.value, m.content or "") for m in messages]


def _unwire(messages: list[tuple[str, str]]) -> list[ChatMessage]:
    return [ChatMessage(role=MessageRole(role), content=content) for role, content in messages]


def describe_exit(code: int) -> str:
    """`signal 11` for a native crash (as the issue reports it), `exit code N` otherwise."""
    return f"signal {-code}" if code < 0 else f"exit code {code}"


class LocalModel(CustomLLM):
    """A LlamaIndex LLM whose model runs in a supervised `rag.worker` child process."""

    label: str = "embedded"
    context_window: int = 2048
    num_output: int = 96

    _spec: dict = PrivateAttr()
    _log: Path = PrivateAttr()
    _proc: subprocess.Popen | None = PrivateAttr(default=None)
    _conn: Connection | None = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)
    _open: bool = PrivateAttr(default=False)  # a request was sent and its last reply not yet read
    _closed: bool = PrivateAttr(default=False)
    _crashes: list = PrivateAttr(default_factory=list)
    _prefix: tuple | None = PrivateAttr(default=None)
    _streaming: threading.Event = PrivateAttr(default_factory=threading.Event)

    def __init__(self, settings: LLMSettings, model_path: Path, log: Path, label: str) -> None:
        super().__init__(label=label, context_window=settings.context_window, num_output=settings.max_tokens)
        self._spec = {
            "model": str(model_path), "threads": settings.threads, "temperature": settings.temperature,
            "max_tokens": settings.max_tokens, "context_window": settings.context_window,
            "extra_buffers": settings.extra_buffers,
        }
        self._log = log
        with self._lock:
            self._start()

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=self.context_window, num_output=self.num_output, model_name=self.label)  # as LlamaCPP's

    @property
    def pid(self) -> int | None:
        """The model process (tests kill it to prove a crash is survived)."""
        return self._proc.pid if self._proc else None

    @property
    def streaming(self) -> threading.Event:
        """Set while tokens of an answer are arriving."""
        return self._streaming

    # -- the LlamaIndex LLM interface -------------------------------------------------------

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        last = ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=""))
        for last in self.stream_chat(messages, **kwargs):
            pass
        return last

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        def gen() -> ChatResponseGen:
            text = ""
            for delta, raw in self._stream(("stream_chat", _wire(messages), kwargs)):
                text += delta
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=delta, raw=raw)

        return gen()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        last = CompletionResponse(text="")
        for last in self.stream_complete(prompt, formatted, **kwargs):
            pass
        return last

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        def gen() -> CompletionResponseGen:
            text = ""
            for delta, raw in self._stream(("stream_complete", prompt, formatted, kwargs)):
                text += delta
                yield CompletionResponse(text=text, delta=delta, raw=raw)

        return gen()

    # -- what only an in-process llama.cpp model can do ----------------------------------------

    def count_tokens(self, prompt: Sequence[ChatMessage] | str) -> int:
        """Tokens of a prompt: chat messages in the model's own chat template, or text as it is."""
        return self._call(("count_tokens", prompt if isinstance(prompt, str) else _wire(prompt)))

    def cache_prefix(self, messages: Sequence[ChatMessage], upto: str) -> float:
        """Fill the KV cache with the rendered prompt up to `upto`; kept and redone after a restart."""
        self._prefix = ("cache_prefix", _wire(messages), upto)
        return self._call(self._prefix)

    def yes_probability(self, messages: Sequence[ChatMessage]) -> float:
        """P("yes") against P("no") as the model's first reply token to these messages: a judgement without writing.

        The prompt should share the answer prompt's opening (system prompt, "Passages:"), so the KV
        cache of that prefix serves both and the next answer does not prefill it again.
        """
        return self._call(("yes_probability", _wire(messages)))

    def prefill_rate(self) -> float:
        """Tokens per second this CPU evaluates a prompt at (the model's own speed, nothing of ours);
        the cached prompt prefix is filled again afterwards."""
        rate = self._call(("prefill_rate",))
        if self._prefix is not None:
            self._call(self._prefix)
        return rate

    def system_info(self) -> str:
        """llama.cpp's build summary and the load options, as the worker sees them."""
        return self._call(("system_info",))

    def close(self) -> None:
        """Stop the model process (no restart follows; a later request starts a new one)."""
        self._closed = True
        with self._lock:
            _stop(self._proc, self._conn)
            self._proc = self._conn = None

    # -- supervision ------------------------------------------------------------------------

    def _start(self) -> None:
        """Start a worker and wait until its model is loaded (the caller holds the lock)."""
        self._log.parent.mkdir(parents=True, exist_ok=True)
        parent, child = socket.socketpair()
        with open(self._log, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "rag.worker", str(child.fileno())],
                pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        child.close()
        conn = Connection(parent.detach())
        try:
            conn.send(self._spec)
            deadline = time.monotonic() + LOAD_TIMEOUT_S
            while not conn.poll(0.2):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise EOFError
            kind, value = conn.recv()
        except (EOFError, OSError) as exc:
            _stop(proc, conn)
            raise BackendError(
                f"The local model could not start ({describe_exit(proc.wait())}) from {self._spec['model']}. "
                f"Run `rag doctor`. The model's log ({self._log}) ends: {self._log_tail()}"
            ) from exc
        if kind == "error":
            _stop(proc, conn)
            raise BackendError(f"Cannot load the embedded model {self._spec['model']}: {value}")
        self._proc, self._conn = proc, conn
        weakref.finalize(self, _stop, proc, conn)
        if self._prefix is not None:
            for _ in self._exchange(self._prefix):
                pass

    def _ensure(self) -> Connection:
        """The live worker; one that died while idle (an OOM kill, say) is replaced without failing the request."""
        if self._proc is not None and self._proc.poll() is not None:
            self._crashes.append(time.monotonic())
            _stop(self._proc, self._conn)
            self._proc = self._conn = None
        if self._conn is None:
            self._closed = False
            self._start()
        assert self._conn is not None
        return self._conn

    def _call(self, request: tuple) -> Any:
        with self._lock:
            for kind, value in self._exchange(request):
                if kind == "result":
                    return value
        raise BackendError("The local model sent no result.")

    def _stream(self, request: tuple) -> Iterator[tuple[str, dict]]:
        """Deltas of one generation; closing the iterator early stops the model and drains its queue."""
        with self._lock:
            try:
                for kind, value in self._exchange(request):
                    if kind == "delta":
                        self._streaming.set()
                        yield value
            finally:
                self._streaming.clear()
                if self._open:
                    self._drain()

    def _exchange(self, request: tuple) -> Iterator[tuple[str, Any]]:
        """Send one request and yield the worker's replies up to its end; a dead worker raises ModelCrashed."""
        conn = self._ensure()
        try:
            conn.send(request)
            self._open = True
            while True:
                kind, value = conn.recv()
                self._open = kind not in ("end", "result", "error")
                if kind == "error":
                    raise BackendError(f"The local model failed: {value}")
                yield kind, value
                if not self._open:
                    return
        except (EOFError, OSError) as exc:
            self._open = False
            raise self._crashed() from exc

    def _drain(self) -> None:
        """The reader stopped early: ask the worker to stop and read up to its end marker."""
        try:
            self._conn.send(("stop",))
            while self._conn.recv()[0] not in ("end", "result", "error"):
                pass
        except (EOFError, OSError):
            self._crashed()
        self._open = False

    def _crashed(self) -> ModelCrashed:
        """Record how the worker died; restart it in the background unless it keeps dying."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        code = _stop(proc, conn)
        now = time.monotonic()
        self._crashes = [t for t in self._crashes if now - t < CRASH_WINDOW_S] + [now]
        cause = describe_exit(code)
        if len(self._crashes) >= MAX_CRASHES:
            return ModelCrashed(
                f"The local model stopped unexpectedly ({cause}), {len(self._crashes)} times in {CRASH_WINDOW_S / 60:.0f} minutes; "
                f"it will be started again with the next question. Run `rag doctor`; the model's log is {self._log}."
            )
        threading.Thread(target=self._restart, name="model-restart", daemon=True).start()
        return ModelCrashed(f"The local model stopped unexpectedly ({cause}); it is being restarted.")

    def _restart(self) -> None:
        with self._lock:
            if self._conn is None and not self._closed:
                try:
                    self._start()
                except Exception:  # noqa: BLE001 - nobody to tell here: the next question starts it again and says why
                    self._proc = self._conn = None

    def _log_tail(self, lines: int = 5) -> str:
        try:
            tail = self._log.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            return "(no log)"
        return " | ".join(tail) or "(empty)"


def _stop(proc: subprocess.Popen | None, conn: Connection | None) -> int:
    """End a worker (if still running) and return its exit status."""
    if conn is not None:
        conn.close()
    if proc is None:
        return 0
    try:
        return proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


# -- the child side ---------------------------------------------------------------------------


def _load(spec: dict) -> Any:
    from rag.backends import build_embedded_llm
    from rag.native import use_extra_buffers

    use_extra_buffers(spec.pop("extra_buffers"))
    return build_embedded_llm(LLMSettings(backend="embedded", **spec), Path("."))


def _finish_raw(raw: Any) -> dict:
    """Only the end reason crosses over: the parent checks it to tell a complete answer from a cut one."""
    choices = raw.get("choices") if isinstance(raw, dict) else None
    reason = choices[0].get("finish_reason") if choices else None
    return {"choices": [{"finish_reason": reason}]}


def _stream_to(conn: Connection, responses: Iterator[Any]) -> None:
    for response in responses:
        conn.send(("delta", (response.delta or "", _finish_raw(response.raw))))
        if conn.poll() and conn.recv()[0] == "stop":
            break
    conn.send(("end", None))


def cache_prompt_prefix(llm: Any, messages: Sequence[ChatMessage], upto: str) -> None:
    """Fill an in-process LlamaCPP's KV cache with the rendered prompt up to `upto` (llama.cpp reuses the longest cached prefix)."""
    prompt = llm.messages_to_prompt(messages)
    llm._model.create_completion(prompt[: prompt.index(upto) + len(upto)], max_tokens=1, temperature=0.0)  # noqa: SLF001


def _yes_probability(llm: Any, prompt: str) -> float:
    """Evaluate `prompt` (reusing the cached token prefix, as llama.cpp's own generate does) and
    compare the next-token logits of the "yes" and "no" spellings."""
    import numpy as np

    model = llm._model  # noqa: SLF001
    tokens = model.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
    cached = model.input_ids[: model.n_tokens].tolist()
    keep = next((i for i, (a, b) in enumerate(zip(cached, tokens)) if a != b), min(len(cached), len(tokens)))
    keep = min(keep, len(tokens) - 1)  # at least one token is evaluated, so its logits are fresh
    model.n_tokens = keep
    model.eval(tokens[keep:])
    logits = np.ctypeslib.as_array(model._ctx.get_logits(), shape=(model.n_vocab(),))  # noqa: SLF001
    ids = {word: {t for w in (word, word.capitalize(), " " + word, " " + word.capitalize())
                  for t in model.tokenize(w.encode(), add_bos=False, special=False)[:1]} for word in ("yes", "no")}
    top = float(logits.max())
    mass = {word: float(np.exp(logits[list(found)] - top).sum()) for word, found in ids.items()}
    return mass["yes"] / (mass["yes"] + mass["no"])


def _prefill_rate(llm: Any, tokens: int = 256, reps: int = 3) -> float:
    """Median tokens/s of evaluating a fixed `tokens`-long prompt from an empty KV cache."""
    model = llm._model  # noqa: SLF001
    ids = model.tokenize(("Every answer cites the passage it rests on. " * 64).encode(), add_bos=False)[:tokens]
    took = []
    for _ in range(reps):
        model.reset()
        start = time.perf_counter()
        model.eval(ids)
        took.append(time.perf_counter() - start)
    model.reset()
    return len(ids) / sorted(took)[len(took) // 2]


@contextmanager
def _output_limit(llm: Any, max_tokens: int | None) -> Iterator[None]:
    """LlamaCPP reads its limit from `generate_kwargs`, not from the call: set it for one answer."""
    default = llm.generate_kwargs.get("max_tokens")
    if max_tokens is not None:
        llm.generate_kwargs["max_tokens"] = max_tokens
    try:
        yield
    finally:
        llm.generate_kwargs["max_tokens"] = default


def _handle(llm: Any, conn: Connection, request: tuple) -> None:
    op, *args = request
    if op == "stream_chat":
        with _output_limit(llm, args[1].pop("max_tokens", None)):
            _stream_to(conn, llm.stream_chat(_unwire(args[0]), **args[1]))
    elif op == "stream_complete":
        _stream_to(conn, llm.stream_complete(args[0], formatted=args[1], **args[2]))
    elif op == "count_tokens":
        prompt = args[0] if isinstance(args[0], str) else llm.messages_to_prompt(_unwire(args[0]))
        conn.send(("result", len(llm._model.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))))  # noqa: SLF001
    elif op == "cache_prefix":
        start = time.perf_counter()
        cache_prompt_prefix(llm, _unwire(args[0]), args[1])
        conn.send(("result", time.perf_counter() - start))
    elif op == "yes_probability":
        conn.send(("result", _yes_probability(llm, llm.messages_to_prompt(_unwire(args[0])))))
    elif op == "prefill_rate":
        conn.send(("result", _prefill_rate(llm)))
    elif op == "system_info":
        from rag.native import system_info

        params = llm._model.model_params  # noqa: SLF001
        conn.send(("result", f"{system_info()} | use_extra_bufts = {int(params.use_extra_bufts)}"))
    elif op == "stop":
        pass  # it came after the answer had ended: the parent already read the end
    else:
        conn.send(("error", f"unknown request {op!r}"))


def serve(conn: Connection) -> None:
    """Load the model, then answer requests one at a time until the parent goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is the parent's to handle
    try:
        llm = _load(conn.recv())
    except Exception as exc:  # any load failure is reported to the parent as text
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        try:
            _handle(llm, conn, request)
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception as exc:  # reported to the parent, which raises it as a BackendError
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1])))
