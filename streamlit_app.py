"""The chat window: draws Answers from the rag pipeline. No retrieval or prompt logic here."""

from __future__ import annotations

import streamlit as st

from rag.answer import stream_answer
from rag.conversations import ConversationStore
from rag.errors import RagError
from rag.settings import load_settings
from rag.ui import (ViewOptions, choose_filters, choose_llm, current_conversation, draw_answer, draw_conversations, draw_corpus,
                    draw_feedback, draw_upload, error_box, escape_md, get_engine, keep_answer, new_conversation, reindex,
                    stream_escaped)

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

with st.sidebar:
    st.caption(escape_md(f"LLM: {engine.backend.llm}"))
    st.caption(escape_md(f"Embeddings: {engine.backend.embedding}"))
    if st.button("New chat", icon="🗨️", use_container_width=True):
        conversation = new_conversation()
    top_k = st.slider("Passages per answer (top-k)", 1, 12, settings.retrieval.top_k)
    show_context = st.toggle("Show retrieved context", value=False)
    filters = choose_filters(engine)
    st.divider()
    draw_conversations(conversations, conversation)
    st.divider()
    st.subheader("Corpus")
    st.caption(escape_md(str(settings.corpus.path)))
    draw_upload(engine)
    if st.button("Re-index corpus", icon="🔄", use_container_width=True):
        reindex(engine)
    draw_corpus(engine)

options = ViewOptions(top_k=top_k, show_context=show_context, corpus=settings.corpus.path)
question = st.chat_input("Ask about the documents…")

if not conversation.messages and not question:
    st.info("Ask a question about the documents. Every answer cites the passages it rests on; "
            "when the documents do not hold the answer, the bot says so.")

for i, message in enumerate(conversation.messages):
    with st.chat_message(message.role):
        if message.answer is not None:
            draw_answer(message.answer, str(i), options)
            draw_feedback(engine, message.answer, conversation.history()[: max(i - 1, 0)], message.id, conversation.id)
        else:
            st.markdown(escape_md(message.content))

if question:
    history = conversation.history()
    with st.chat_message("user"):
        st.markdown(escape_md(question))
    with st.chat_message("assistant"):
        placeholder = st.empty()
        try:
            stream = stream_answer(engine, question, history, top_k=top_k, filters=filters)
            with placeholder.container():
                st.write_stream(stream_escaped(iter(stream)))
            answer = stream.answer
        except Exception as exc:  # shown as st.error; the chat history stays
            placeholder.empty()
            error_box(exc, "The question was not answered; the conversation is kept. Try again.")
            answer = None
        if answer is not None:
            reply = keep_answer(conversations, conversation, question, answer)
            placeholder.empty()
            with placeholder.container():
                draw_answer(answer, str(len(conversation.messages) - 1), options)
                draw_feedback(engine, answer, history, reply.id, conversation.id)
