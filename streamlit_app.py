"""The chat window: draws Answers from the rag pipeline. No retrieval or prompt logic here."""

from __future__ import annotations

import streamlit as st

from rag.chat_view import draw_chat
from rag.conversations import ConversationStore
from rag.errors import RagError
from rag.settings import load_settings
from rag.ui import (ViewOptions, choose_filters, choose_llm, current_conversation, draw_conversations, draw_corpus, draw_upload,
                    error_box, escape_md, get_engine, new_conversation, reindex)

st.set_page_config(page_title="Ask the documents", page_icon="📚", layout="wide")

try:
    settings = load_settings()
except RagError as exc:
    error_box(exc, "Fix the setting named above in rag.toml or the environment, then reload the page.")
    st.stop()

with st.sidebar:
    st.header("📚 Ask the documents")
    try:
        settings = choose_llm(settings)
    except RagError as exc:
        error_box(exc, "Fix the backend settings above.")
        st.stop()

try:
    engine = get_engine(settings)
except RagError as exc:
    error_box(exc, "Fix the problem above (or pick another backend in the sidebar), then try again.")
    st.stop()

conversations = ConversationStore(settings.chroma.path)
conversation = current_conversation(conversations)
question = st.chat_input("Ask about the documents…")  # read before the sidebar, which lists the chat it starts

with st.sidebar:
    st.caption(escape_md(f"LLM: {engine.backend.llm}"))
    st.caption(escape_md(f"Embeddings: {engine.backend.embedding}"))
    if st.button("New chat", icon="🗨️", use_container_width=True):
        conversation = new_conversation()
    top_k = st.slider("Passages per answer (top-k)", 1, 12, settings.retrieval.top_k)
    show_context = st.toggle("Show retrieved context", value=False)
    filters = choose_filters(engine)
    st.divider()
    being_answered = draw_conversations(conversations, conversation, asking=question)
    st.divider()
    st.subheader("Corpus")
    st.caption(escape_md(str(settings.corpus.path)))
    draw_upload(engine)
    if st.button("Re-index corpus", icon="🔄", use_container_width=True):
        reindex(engine)
    draw_corpus(engine)

options = ViewOptions(top_k=top_k, show_context=show_context, corpus=settings.corpus.path)

if not conversation.messages and not question:
    st.info("Ask a question about the documents. Every answer cites the passages it rests on; "
            "when the documents do not hold the answer, the bot says so.")

draw_chat(engine, conversations, conversation, question, options, filters)
if being_answered is not None and conversation.messages:
    being_answered.caption(escape_md(f"▸ {conversation.title}"))  # answered: its buttons come with the next run
