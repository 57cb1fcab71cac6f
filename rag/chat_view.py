"""The chat column of the app: the conversation's messages, and the answer being written.

Streamlit stops a running script when the person asks the next question (or clicks, reloads,
closes the tab), at the next element it draws. The answer being written is therefore run inside
a conversations.Exchange, which stores the question before anything is drawn and settles the
reply however the run ends: answered, interrupted (its streamed text, no ✅, "Answer again") or
failed (the error, "Answer again"). Drawing only: the keeping is rag.conversations'.
"""

from __future__ import annotations

import contextlib

import streamlit as st
from streamlit.runtime.scriptrunner_utils.exceptions import RerunException, StopException

from rag.answer import stream_answer
from rag.conversations import Conversation, ConversationStore, Exchange, Message
from rag.engine import Engine
from rag.retrieve import Filters
from rag.ui import ViewOptions, draw_answer, draw_feedback, escape_md, hold, stream_escaped

WAITING = "⏳ This answer is still being written (the page was reloaded, or the conversation is open in another tab); it appears here when it is done."
SETTLE_WAIT_S = 10.0  # an earlier run's check takes 1-3 s on the embedded model (5 s for a long broad answer)
STOPPED = "This answer was not finished: the app stopped while it was being written. It was not checked, so none of it has a ✅."


def draw_chat(engine: Engine, store: ConversationStore, conversation: Conversation, question: str | None,
              options: ViewOptions, filters: Filters) -> None:
    """Every message of the conversation; a new question (or an "Answer again") is answered in its place."""
    conversation = _settled(store, conversation)
    exchange = _open_exchange(store, conversation, question)
    slot = None
    with exchange or contextlib.nullcontext():
        if exchange is not None:
            st.query_params["c"] = conversation.id  # from its first question, a reload reopens it
        for i, message in enumerate(conversation.messages):
            with st.chat_message(message.role):
                if exchange is not None and message is exchange.reply:
                    slot = st.empty()
                else:
                    draw_message(engine, store, conversation, i, options)
        if exchange is not None and slot is not None:
            with slot.container():
                answering = stream_answer(engine, exchange.question, exchange.history, top_k=options.top_k, filters=filters)
                st.write_stream(stream_escaped(exchange.follow(answering)))
    if exchange is not None and slot is not None:  # answered or failed, and stored: drawn as a reload will draw it
        with slot.container():
            draw_message(engine, store, conversation, conversation.messages.index(exchange.reply), options)


def _settled(store: ConversationStore, conversation: Conversation) -> Conversation:
    """The conversation once the replies an earlier run is still settling are stored. Streamlit starts
    the next run as soon as the next question comes and stops the earlier one at its next drawing
    call: after the check it was running (it is then kept whole) or at its next token."""
    running = [m.id for m in conversation.messages if m.status == "pending" and Exchange.running(m.id)]
    if not running or not all(Exchange.wait(reply_id, SETTLE_WAIT_S) for reply_id in running):
        return conversation  # none, or still writing after the wait: shown ⏳ until stored (_await_reply)
    return hold(store.get(conversation.id))


def _open_exchange(store: ConversationStore, conversation: Conversation, question: str | None) -> Exchange | None:
    """The question just asked, or the reply whose "Answer again" was clicked; stored before any drawing."""
    again = st.session_state.pop("answer_again", None)
    if question:
        return Exchange.ask(store, conversation, question, cause=_cause)
    if again and any(m.id == again and m.status != "answered" for m in conversation.messages):
        return Exchange.again(store, conversation, again, cause=_cause)
    return None


def _cause(exc: BaseException) -> str:
    """What stopped the script, in the person's words."""
    if isinstance(exc, (RerunException, StopException)):  # a fast rerun stops the earlier run: the same exception
        return "your next question, a click or a reload"
    return "the app stopping"


def draw_message(engine: Engine, store: ConversationStore, conversation: Conversation, i: int, options: ViewOptions) -> None:
    message = conversation.messages[i]
    if message.role == "user":
        st.markdown(escape_md(message.content))
    elif message.answer is not None:
        draw_answer(message.answer, message.id, options)
        draw_feedback(engine, message.answer, conversation.history(i - 1), message.id, conversation.id)
    elif message.status == "pending" and Exchange.running(message.id):
        _await_reply(store, conversation.id, message.id)
    else:
        _draw_unanswered(message)


def _draw_unanswered(message: Message) -> None:
    """An interrupted or failed reply (or one whose app stopped): what was streamed, plainly unchecked, and a way to finish it."""
    if message.content.strip():
        st.markdown(escape_md(message.content))
    if message.status == "failed":
        st.error(escape_md(f"{message.error}\n\nThe question is kept; the answer was not finished."))
    else:
        st.warning(escape_md(message.note or STOPPED), icon="⏸️")
    st.button("Answer again", key=f"again-{message.id}", icon="🔁", help="Runs this question again, with its check, in its place",
              on_click=lambda: st.session_state.update(answer_again=message.id))


@st.fragment(run_every=1.0)
def _await_reply(store: ConversationStore, conversation_id: str, reply_id: str) -> None:
    """A reply another run of this app is still writing: checked each second, the page redrawn once it is stored."""
    kept = store.load(conversation_id)
    reply = next((m for m in kept.messages if m.id == reply_id), None) if kept else None
    if reply is None or reply.status != "pending" or not Exchange.running(reply_id):
        if kept is not None:
            hold(kept)
        st.rerun(scope="app")
    st.info(WAITING)
