"""Streamlit drawing: Answers, sources, the sidebar. No retrieval or prompt logic here.

Document and model text is never trusted as markup: it is backslash-escaped for markdown
or HTML-escaped for st.html, so a `<script>` or a markdown link in a document shows as text.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import streamlit as st
from streamlit.delta_generator import DeltaGenerator
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.llms import LLM
from pydantic import SecretStr

from rag.answer import warm_up
from rag.citations import is_lead_in
from rag.backends import build_embedding, build_llm
from rag.corpus import SUPPORTED_EXTENSIONS, read_source
from rag.engine import Engine, build_engine
from rag.errors import RagError, describe
from rag.retrieve import Filters
from rag.uploads import OnConflict, Upload, add_documents, remove_document
from rag.conversations import Conversation, ConversationStore, title_for, to_json, to_markdown
from rag.feedback import Feedback, Problem, give
from rag.schema import Answer, Citation, Passage, Turn
from rag.settings import EmbeddingSettings, Settings, load_settings

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&=\"'^%])")
DOC_WINDOW = 6_000  # characters of a long document shown on each side of the quote


def escape_md(text: str) -> str:
    """Text shown literally by st.markdown: every markdown/HTML-significant character escaped, and
    each line break kept (markdown joins single lines: a summary's bullets would run together)."""
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\n", "  \n")


def answer_markdown(text: str) -> str:
    """The answer shown literally, with a line that introduces what follows (a comparison's "The US:") in bold."""
    return "  \n".join(f"**{escape_md(line)}**" if line.strip() and is_lead_in(line) else escape_md(line) for line in text.split("\n"))


def highlight(text: str, spans: list[tuple[int, int]]) -> str:
    """HTML-escaped text with the given character spans wrapped in <mark>."""
    out, cursor = [], 0
    for start, end in sorted(spans):
        start = max(start, cursor)
        if start >= end:
            continue
        out.append(html.escape(text[cursor:start]))
        out.append(f"<mark>{html.escape(text[start:end])}</mark>")
        cursor = end
    out.append(html.escape(text[cursor:]))
    return "".join(out)


def _quote_spans(text: str, quotes: list[str]) -> list[tuple[int, int]]:
    spans = []
    for quote in quotes:
        at = text.find(quote)
        if at >= 0:
            spans.append((at, at + len(quote)))
    return spans


def _box(inner: str) -> str:
    style = "white-space: pre-wrap; font-size: 0.9rem; line-height: 1.45;"
    return f'<div class="rag-snippet" style="{style}">{inner}</div>'


def _cache_key(model) -> str:  # noqa: ANN001
    """A settings object's identity for st.cache_resource, secrets included (as a hash), never shown."""
    secrets = [v.get_secret_value() for v in _secrets(model)]
    return model.model_dump_json() + hashlib.sha256("\0".join(secrets).encode()).hexdigest()


def _secrets(model) -> list:  # noqa: ANN001
    found = []
    for value in dict(model).values():
        if isinstance(value, SecretStr):
            found.append(value)
        elif hasattr(value, "model_dump"):
            found.extend(_secrets(value))
    return found


@st.cache_resource(show_spinner="Loading the embedding model…")
def _embedder(key: str, _settings: EmbeddingSettings) -> BaseEmbedding:
    return build_embedding(_settings)


@st.cache_resource(show_spinner="Loading the language model (first start only)…")
def _llm(key: str, _settings: Settings) -> LLM:
    return build_llm(_settings.llm, _settings.cache_dir)


@st.cache_resource(show_spinner="Opening the index and warming up the model…")
def _engine(key: str, _settings: Settings) -> Engine:
    embedder = _embedder(_cache_key(_settings.embed), _settings.embed)
    llm = _llm(_cache_key(_settings.llm) + str(_settings.cache_dir), _settings)
    engine = build_engine(_settings, llm=llm, embed_model=embedder)
    warm_up(engine)
    return engine


def get_engine(settings: Settings) -> Engine:
    """One Engine per configuration, shared by every session; the models are loaded once each."""
    return _engine(_cache_key(settings), settings)


def clear_caches() -> None:
    for cached in (_embedder, _llm, _engine):
        cached.clear()


@dataclass
class ViewOptions:
    top_k: int
    show_context: bool
    corpus: Path


def stream_escaped(deltas: Iterator[str]) -> Iterator[str]:
    for delta in deltas:
        yield escape_md(delta)


def draw_answer(answer: Answer, key: str, options: ViewOptions) -> None:
    """The final answer: text with [n] markers, then its sources (or the refusal and closest passages)."""
    if answer.refused:
        draw_refusal(answer, key)
    else:
        st.markdown(answer_markdown(answer.answer))
        if answer.standalone_question:  # a follow-up: what it was searched as
            st.caption(escape_md(f"Searched for: {answer.standalone_question}"))
        draw_sentence_states(answer)
        draw_sources(answer, key, options.corpus)
    for notice in answer.notices:
        st.caption(escape_md(notice))
    if options.show_context and answer.passages:
        with st.expander(f"Retrieved context ({len(answer.passages)} passages)"):
            for p in answer.passages:
                st.caption(escape_md(f"[{p.n}] {p.source} · relevance {p.score:.2f}"))
                st.html(_box(html.escape(p.text)))
    timing = answer.timings
    first = f"first token {timing.first_token_s:.1f} s · " if timing.first_token_s is not None else ""
    kind = f"{answer.kind} of {', '.join(dict.fromkeys(p.source for p in answer.passages))} · " if answer.kind != "lookup" and answer.passages else ""
    st.caption(escape_md(f"{kind}{answer.backend.llm} · {first}total {timing.total_s:.1f} s"))


def current_conversation(store: ConversationStore) -> Conversation:
    """The conversation `?c=<id>` names (so it survives a reload and a restart), or the tab's new one."""
    wanted = st.query_params.get("c")
    held = st.session_state.get("conversation")
    if held is not None and wanted in (None, held.id):
        return held
    found = store.load(wanted) if wanted else None
    if wanted and found is None:
        st.warning(escape_md(f"Conversation {wanted} is not kept here (deleted, or another index): a new one starts."), icon="🗨️")
    return new_conversation() if found is None else hold(found)


def new_conversation() -> Conversation:
    st.query_params.pop("c", None)
    return hold(Conversation())


def hold(conversation: Conversation) -> Conversation:
    """The tab's conversation from now on, named in the URL once it has a message."""
    st.session_state.conversation = conversation
    if conversation.messages:
        st.query_params["c"] = conversation.id
    return conversation


def draw_conversations(store: ConversationStore, current: Conversation, asking: str | None = None) -> DeltaGenerator | None:
    """The kept conversations (open, rename, delete) and the current one's export.

    A new chat's first question (`asking`) is kept only once its answer starts, after the sidebar
    is drawn, so it is listed as being answered; the slot returned holds that line, for the caller
    to name the chat in once answered. Its buttons come with the next run: rerunning at once would
    redraw the answer and close a source the reader has just opened."""
    st.subheader("Conversations")
    kept = store.list()
    pending = None
    if asking and not current.messages:
        pending = st.empty()
        pending.caption(escape_md(f"▸ {title_for(asking)} (being answered…)"))
    elif not kept:
        st.caption("None yet: each chat is kept from its first question.")
    for conv in kept[:50]:
        name, rename, delete = st.columns([6, 1, 1], vertical_alignment="center")
        marker = "▸ " if conv.id == current.id else ""
        if name.button(escape_md(marker + conv.title), key=f"open-{conv.id}", use_container_width=True, type="tertiary"):
            hold(store.get(conv.id))
            st.rerun()
        if rename.button("✏️", key=f"rename-{conv.id}", help="Rename"):
            st.session_state.renaming = conv.id
        if delete.button("🗑️", key=f"delete-{conv.id}", help="Delete"):
            store.delete(conv.id)
            if conv.id == current.id:
                new_conversation()
            st.rerun()
    if (renaming := st.session_state.get("renaming")) and (conv := store.load(renaming)):
        with st.form("rename"):
            title = st.text_input("New name", value=conv.title, max_chars=200, key="rename-title")
            if st.form_submit_button("Rename"):
                guarded(lambda: store.rename(renaming, title))
                st.session_state.renaming = None
                if renaming == current.id:
                    hold(store.get(renaming))
                st.rerun()
    if current.messages:
        stem = re.sub(r"[^\w-]+", "-", current.title).strip("-")[:40] or "conversation"
        st.download_button("Export as Markdown", to_markdown(current), f"{stem}.md", "text/markdown", icon="📝", use_container_width=True)
        st.download_button("Export as JSON", to_json(current), f"{stem}.json", "application/json", icon="🧾", use_container_width=True)
    return pending


def draw_feedback(engine: Engine, answer: Answer, history: list[Turn], key: str, conversation_id: str = "") -> None:
    """👍/👎 under an answer; 👎 asks what was wrong and, optionally, the correct answer. Every
    rating is stored with what it takes to replay it (rag.feedback), to become a test case."""
    saved = st.session_state.setdefault("feedback_saved", {})
    if key in saved:
        st.caption(escape_md(f"Feedback #{saved[key]} saved: `rag feedback export` turns it into a test case."))
        return
    rating = st.feedback("thumbs", key=f"rate-{key}")
    if rating == 1:
        saved[key] = give(engine.settings, answer, Feedback(rating=1), history, conversation_id, engine.index.source_hashes())
        st.rerun()
    if rating == 0:
        with st.form(f"why-{key}"):
            problem = st.radio("What was wrong?", list(Problem), format_func=lambda p: p.value.capitalize(), horizontal=True)
            correction = st.text_area("The correct answer (optional)", max_chars=5000)
            sources = st.multiselect("The right documents (optional)", sorted(engine.index.titles()))
            if st.form_submit_button("Send feedback"):
                fb = Feedback(rating=-1, problem=problem, correction=correction.strip(), sources=sources)
                saved[key] = give(engine.settings, answer, fb, history, conversation_id, engine.index.source_hashes())
                st.rerun()


def draw_sentence_states(answer: Answer) -> None:
    """⚠️ on every sentence its quotes do not state (never a green check), and which check decided."""
    unsupported = [c for c in answer.sentences if not c.supported]
    if unsupported:
        lines = "\n".join(f"- ⚠️ “{escape_md(c.text)}” ({escape_md(c.reason or 'not supported')})" for c in unsupported)
        st.warning(f"Not supported by the cited passages — read with care:\n{lines}", icon="⚠️")
    if answer.sentences:
        shown = sum(c.supported for c in answer.sentences)
        quoted = sum(c.quoted_for is not None for c in answer.sentences)
        words = f" ({quoted} in the documents' own words, in quotation marks)" if quoted else ""
        st.caption(escape_md(f"✅ {shown} of {len(answer.sentences)} sentences stated by their quotes{words} · check: {answer.support_check}"))


def draw_refusal(answer: Answer, key: str) -> None:
    st.warning(escape_md(answer.answer), icon="🔎")
    if answer.refusal_reason and answer.refusal_reason != "no question":
        st.caption(escape_md(f"Why: {answer.refusal_reason}."))
    if answer.draft:
        with st.expander("What the model drafted (withheld: not supported by the documents)"):
            st.html(_box(html.escape(answer.draft)))
    if answer.passages and answer.refusal_reason != "no question":
        st.markdown("**Closest passages**")
        for p in answer.passages[:3]:
            with st.expander(escape_md(f"{p.title or p.source} — {p.source} · relevance {p.score:.2f}")):
                st.html(_box(html.escape(p.text)))


def _label(passage: Passage | Citation, n: int, verified: bool, score: float | None) -> str:
    title = passage.title or passage.source
    status = "✅ supported" if verified else "⚠️ not supported"
    rel = f" · relevance {score:.2f}" if score is not None else ""
    return f"[{n}] {title} — {passage.source}{rel} · {status}"


def draw_sources(answer: Answer, key: str, corpus: Path) -> None:
    """One expander per cited passage: metadata, the chunk with the cited quote highlighted, the document."""
    by_n: dict[int, list[Citation]] = {}
    for c in answer.citations:
        by_n.setdefault(c.n, []).append(c)
    passages = {p.n: p for p in answer.passages}
    if by_n:
        st.markdown("**Sources**")
    for n, cites in sorted(by_n.items()):
        passage = passages.get(n)
        verified = all(c.verified for c in cites)
        doc_key = f"doc-{key}-{n}"
        label = escape_md(_label(passage or cites[0], n, verified, passage.score if passage else None))
        with st.expander(label, expanded=bool(st.session_state.get(doc_key))):  # stays open across the rerun
            if passage is not None:
                _draw_metadata(passage)
            text = cites[0].text
            st.html(_box(highlight(text, _quote_spans(text, [c.quote for c in cites]))))
            if not verified:
                st.caption("⚠️ The quote does not state the sentence it is cited for, or it could not be confirmed in the source file as it is now.")
            if st.toggle("Show the whole document", key=doc_key):
                draw_document(corpus, cites)
    for n in answer.dropped_citations:
        st.caption(escape_md(f"⚠️ The model cited [{n}], but no sentence of the answer rests on it: dropped."))


def _draw_metadata(passage: Passage) -> None:
    bits = [f"File: {passage.source}"]
    if passage.date:
        bits.append(f"Date: {passage.date}")
    st.caption(escape_md(" · ".join(bits)))
    if passage.url and passage.url.startswith(("http://", "https://")):
        st.html(f'<a href="{html.escape(passage.url, quote=True)}" target="_blank" rel="noopener noreferrer">{html.escape(passage.url)}</a>')
    if passage.also_in:
        st.caption(escape_md(f"Also stated in: {', '.join(passage.also_in)}"))


def draw_document(corpus: Path, cites: list[Citation]) -> None:
    """The whole source document (as a reader sees it) with the cited spans highlighted."""
    try:
        _, cleaned = read_source(corpus, cites[0].source)
    except (OSError, RagError) as exc:
        st.error(escape_md(f"The source file cannot be opened now: {exc}"))
        return
    spans = [cleaned.offsets.to_clean(c.start, c.end) for c in cites if c.start is not None and c.end is not None]
    text, shift = cleaned.text, 0
    if len(text) > 2 * DOC_WINDOW and spans:
        first, last = min(s for s, _ in spans), max(e for _, e in spans)
        shift = max(0, first - DOC_WINDOW)
        text = text[shift : last + DOC_WINDOW]
        st.caption(f"Showing characters {shift:,}–{shift + len(text):,} of a {len(cleaned.text):,}-character document, around the quote.")
    st.caption(escape_md(f"Quote at characters {cites[0].start}–{cites[0].end} of the file."))
    st.html(_box(highlight(text, [(s - shift, e - shift) for s, e in spans])))


LLM_CHOICES = ["embedded", "openai-compatible", "ollama", "openai"]


def choose_llm(settings: Settings) -> Settings:
    """The sidebar's backend selector: the configured backend unless the user picks another."""
    choices = LLM_CHOICES + ([settings.llm.backend] if settings.llm.backend not in LLM_CHOICES else [])
    with st.expander("Language model"):
        backend = st.selectbox("Backend", choices, index=choices.index(settings.llm.backend), key="llm_backend")
        same = backend == settings.llm.backend
        model = st.text_input("Model", value=(settings.llm.model or "") if same else "", key=f"llm_model_{backend}",
                              placeholder={"embedded": "qwen2.5-coder-1.5b", "openai": "gpt-4o-mini",
                                           "openai-compatible": "first model the server lists"}.get(backend, "required"))
        url = st.text_input("Base URL", value=(settings.llm.base_url or "") if same else "", key=f"llm_url_{backend}",
                            placeholder={"openai-compatible": "http://127.0.0.1:8080/v1", "ollama": "http://127.0.0.1:11434"}.get(backend, ""),
                            disabled=backend in ("embedded", "mock"))
        key = st.text_input("API key", type="password", key=f"llm_key_{backend}", disabled=backend in ("embedded", "mock", "ollama"))
    if same and not model and not url and not key:
        return settings
    override: dict = {"backend": backend, "model": model or None, "base_url": url or None}
    if key:
        override["api_key"] = key
    return load_settings(overrides={"llm": override})


def choose_filters(engine: Engine) -> Filters:
    """Sidebar filters: some files only, and/or a date range (undated documents then drop out)."""
    with st.expander("Filters"):
        sources = st.multiselect("Only these files", sorted(engine.index.chunk_counts()), key="filter_sources")
        since = st.date_input("Dated on or after", value=None, key="filter_since")
        until = st.date_input("Dated on or before", value=None, key="filter_until")
    return Filters(sources=sources, since=since, until=until)


def draw_corpus(engine: Engine) -> None:
    """The indexed documents, each removable (from the folder and the index)."""
    counts = engine.index.chunk_counts()
    docs = engine.index.documents()
    st.caption(escape_md(f"{len(counts)} documents · {sum(counts.values())} chunks"))
    for name, count in sorted(counts.items()):
        title = docs[name].metadata.get("title", name) if name in docs else name
        text, remove = st.columns([8, 1], vertical_alignment="center")
        text.markdown(escape_md(f"{name} ({count} chunks)") + f"  \n<small>{html.escape(title)}</small>", unsafe_allow_html=True)
        if remove.button("🗑️", key=f"remove-{name}", help="Remove from the corpus folder and the index"):
            if guarded(lambda: remove_document(engine, name)) is not None:
                st.rerun()


def draw_upload(engine: Engine) -> None:
    """Files dropped here join the corpus and are answerable at once; a name already taken by other content asks first."""
    round_ = st.session_state.setdefault("upload_round", 0)
    files = st.file_uploader("Add documents", type=[e.lstrip(".") for e in SUPPORTED_EXTENSIONS], accept_multiple_files=True,
                             key=f"upload-{round_}")
    pending = st.session_state.get("upload_conflicts")
    if pending:
        choice = st.radio(escape_md(f"Already in the corpus with other content: {', '.join(pending)}"),
                          [OnConflict.REPLACE, OnConflict.KEEP_BOTH], format_func=lambda c: c.value.capitalize(), key=f"conflict-{round_}")
    if files and st.button(f"Add {len(files)} file{'s' if len(files) > 1 else ''} to the corpus", icon="➕", use_container_width=True):
        on_conflict = choice if pending else OnConflict.ASK
        bar = st.progress(0.0, text="Indexing the new documents…")
        uploads = [Upload(f.name, f.getvalue()) for f in files if not pending or f.name in pending]
        result = guarded(lambda: add_documents(engine, uploads, on_conflict,
                                               lambda done, total: bar.progress(done / max(total, 1), text=f"Indexed {done} of {total}")))
        bar.empty()
        if result is None:
            return
        for item in result.skipped:
            st.caption(escape_md(item.reason))
        st.session_state.upload_conflicts = result.conflicts
        if result.added or result.replaced:
            st.success(escape_md(f"Added {', '.join(result.added + result.replaced)}: {result.summary}"))
        if not result.conflicts:
            st.session_state.upload_round = round_ + 1  # a fresh uploader for the next files


def reindex(engine: Engine) -> None:
    bar = st.progress(0.0, text="Indexing the corpus…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"Indexed {done} of {total} changed documents")

    try:
        report = engine.ingest(progress=progress)
    except RagError as exc:
        bar.empty()
        st.error(escape_md(str(exc)))
        return
    bar.progress(1.0, text="Done")
    st.success(escape_md(report.summary()))
    for item in report.skipped:
        st.caption(escape_md(f"Skipped {item.file}: {item.reason}"))


def error_box(exc: Exception, hint: str = "") -> None:
    st.error(escape_md(describe(exc) + (f"\n\n{hint}" if hint else "")))


def guarded(fn: Callable[[], object], hint: str = "") -> object | None:
    """Run fn; show a clear st.error instead of a traceback when it fails."""
    try:
        return fn()
    except Exception as exc:  # the UI must never show a traceback
        error_box(exc, hint)
        return None

