"""Conversations that outlive the browser tab: kept in the app's database (rag.store), exported as Markdown or JSON.

A conversation is its messages: the user's questions and the Answers to them, whole (citations,
support states, passages), so that it reopens exactly as it was shown and exports with its
sources. The app keys it by `?c=<id>` in the URL, `rag chat --resume <id>` continues it.

A question is written to the store the moment it is asked, with a pending reply (an Exchange),
and the reply is settled however the answering ends: answered; interrupted (Streamlit stops a
running script when the next question comes, a closed tab stops it, Ctrl-C stops the CLI),
kept with the text streamed so far and no ✅; or failed (the model process died, the backend
is down), kept with the error. So a reload, a crash or the next question never loses what the
person asked or saw.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Callable, Iterator, Literal

from pydantic import BaseModel, Field

from rag.errors import QuestionError, RagError, describe
from rag.schema import Answer, Turn
from rag.store import connect, rows

if TYPE_CHECKING:
    from rag.answer import AnswerStream

TITLE_CHARS = 80
log = logging.getLogger(__name__)

# A reply's state. "pending": being answered (or its process stopped before it could say how it
# ended); "answered": `answer` holds the whole Answer; "interrupted": stopped before its check
# finished, `content` is the text streamed so far; "failed": `error` says why.
Status = Literal["pending", "answered", "interrupted", "failed"]


class Message(BaseModel):
    role: str  # "user" or "assistant"
    content: str
    answer: Answer | None = None  # an answered reply's whole Answer
    status: Status = "answered"  # of an assistant's reply; a user's question is "answered"
    note: str | None = None  # why an interrupted reply stopped, as the person is told
    error: str | None = None  # a failed reply's error
    rev: int = 0  # raised at each change, so a save keeps the newer of two copies (ConversationStore.save)
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)


class Conversation(BaseModel):
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    title: str = ""
    created_at: str = Field(default_factory=lambda: _now())
    updated_at: str = Field(default_factory=lambda: _now())
    messages: list[Message] = Field(default_factory=list)

    def history(self, upto: int | None = None) -> list[Turn]:
        """The turns before message `upto` (all by default) that the next question can follow on: an
        exchange whose reply failed or has no words yet is left out, question and all (no model
        answered it; a follow-up would be rewritten around a question left open)."""
        messages, turns = self.messages[:upto], []
        for i, m in enumerate(messages):
            reply = m if m.role == "assistant" else next(iter(messages[i + 1 : i + 2]), None)
            if reply is not None and reply.role == "assistant" and reply.status in ("answered", "interrupted") and reply.content.strip():
                turns.append(Turn(role=m.role, content=m.content))
        return turns

    def ask(self, question: str) -> Message:
        """The question and its pending reply; the first question names the conversation."""
        self.messages += [Message(role="user", content=question), reply := Message(role="assistant", content="", status="pending")]
        self.title = self.title or title_for(question)
        self.updated_at = _now()
        return reply

    def add(self, question: str, answer: Answer) -> Message:
        """The question and its answer, at once."""
        reply = self.ask(question)
        self.settle(reply, "answered", answer.answer, answer=answer)
        return reply

    def question_of(self, reply: Message) -> str:
        """The question a reply answers: the user message before it."""
        at = self.messages.index(reply)
        if at == 0 or self.messages[at - 1].role != "user":
            raise QuestionError(f"Message {reply.id} answers no question.")
        return self.messages[at - 1].content

    def reply(self, reply_id: str) -> Message:
        found = next((m for m in self.messages if m.id == reply_id and m.role == "assistant"), None)
        if found is None:
            raise QuestionError(f"No reply {reply_id!r} in conversation {self.id}.")
        return found

    def settle(self, reply: Message, status: Status, content: str, *, answer: Answer | None = None,
               note: str | None = None, error: str | None = None) -> None:
        reply.status, reply.content, reply.answer, reply.note, reply.error = status, content, answer, note, error
        reply.rev += 1
        self.updated_at = _now()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def title_for(question: str) -> str:
    """A conversation's name from its first question, cut at a word."""
    text = " ".join(question.split())
    return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1].rsplit(" ", 1)[0] + "…"


class ConversationStore:
    """The conversations of one index folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def save(self, conversation: Conversation) -> None:
        """Write the conversation, merged with the stored copy message by message, in one transaction.

        Two tabs (or a reloaded tab and the run it left going) may hold copies of one conversation:
        a message only the store has is kept in its place, of one both hold the higher `rev` wins,
        and this copy's new messages follow. The stored title stays (a rename elsewhere is kept).
        """
        with closing(connect(self.folder)) as db:
            db.execute("BEGIN IMMEDIATE")  # no other writer between the read and the write
            try:
                row = db.execute("SELECT title, messages FROM conversations WHERE id = ?", (conversation.id,)).fetchone()
                if row is not None:
                    conversation.title = row[0] or conversation.title
                    conversation.messages = _merged([Message.model_validate(m) for m in json.loads(row[1])], conversation.messages)
                db.execute("INSERT INTO conversations (id, title, created_at, updated_at, messages) VALUES (?, ?, ?, ?, ?) "
                           "ON CONFLICT(id) DO UPDATE SET updated_at=excluded.updated_at, messages=excluded.messages",
                           (conversation.id, conversation.title, conversation.created_at, conversation.updated_at,
                            json.dumps([m.model_dump(mode="json") for m in conversation.messages])))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def load(self, conversation_id: str) -> Conversation | None:
        found = rows(self.folder, "SELECT id, title, created_at, updated_at, messages FROM conversations WHERE id = ?", (conversation_id,))
        if not found:
            return None
        row = found[0]
        return Conversation(id=row[0], title=row[1], created_at=row[2], updated_at=row[3],
                            messages=[Message.model_validate(m) for m in json.loads(row[4])])

    def get(self, conversation_id: str) -> Conversation:
        """The conversation, or a clear error naming the id."""
        found = self.load(conversation_id)
        if found is None:
            raise QuestionError(f"No conversation {conversation_id!r} in {self.folder}: `rag chat --list` shows the ones kept.")
        return found

    def list(self) -> list[Conversation]:
        """Every conversation, newest first, without its messages (for the sidebar)."""
        found = rows(self.folder, "SELECT id, title, created_at, updated_at FROM conversations ORDER BY updated_at DESC, id")
        return [Conversation(id=r[0], title=r[1], created_at=r[2], updated_at=r[3]) for r in found]

    def rename(self, conversation_id: str, title: str) -> None:
        title = " ".join(title.split())
        if not title:
            raise QuestionError("A conversation's name cannot be empty.")
        with closing(connect(self.folder)) as db:
            db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title[:200], conversation_id))

    def delete(self, conversation_id: str) -> None:
        with closing(connect(self.folder)) as db:
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))


def _merged(stored: list[Message], ours: list[Message]) -> list[Message]:
    mine = {m.id: m for m in ours}
    merged = [mine[m.id] if m.id in mine and mine[m.id].rev >= m.rev else m for m in stored]
    known = {m.id for m in stored}
    return merged + [m for m in ours if m.id not in known]


class Exchange:
    """One question being answered in a kept conversation: written to the store when it is asked,
    settled and written again however the answering ends (see the module docstring).

        with Exchange.ask(store, conversation, question) as exchange:
            for delta in exchange.follow(stream_answer(engine, exchange.question, exchange.history)):
                show(delta)
        exchange.reply  # answered, interrupted or failed, and stored

    A failure (an Exception) is recorded and not raised again: the door draws the failed reply.
    Anything else (Streamlit's stop of the script, Ctrl-C) is recorded and goes on, so the
    script stops or the next question starts as it would have. `cause` names for the person
    what stopped it ("your next question").
    """

    _in_flight: dict[str, threading.Event] = {}  # replies being answered in this process, set when settled
    _lock = threading.Lock()

    def __init__(self, store: ConversationStore, conversation: Conversation, reply: Message,
                 cause: Callable[[BaseException], str] = lambda exc: "the program stopping") -> None:
        self.store, self.conversation, self.reply, self.cause = store, conversation, reply, cause
        self.question = conversation.question_of(reply)
        self.history = conversation.history(conversation.messages.index(reply) - 1)
        self.streamed = ""
        self.answering: AnswerStream | None = None
        self._deltas: Iterator[str] | None = None

    @classmethod
    def ask(cls, store: ConversationStore, conversation: Conversation, question: str, **kw) -> Exchange:  # noqa: ANN003
        """The question and its pending reply, stored before anything else happens."""
        reply = conversation.ask(question)
        store.save(conversation)
        return cls(store, conversation, reply, **kw)

    @classmethod
    def again(cls, store: ConversationStore, conversation: Conversation, reply_id: str, **kw) -> Exchange:  # noqa: ANN003
        """An interrupted or failed reply answered again, in its place, with the history before it."""
        reply = conversation.reply(reply_id)
        conversation.settle(reply, "pending", "")
        store.save(conversation)
        return cls(store, conversation, reply, **kw)

    @classmethod
    def running(cls, reply_id: str) -> bool:
        with cls._lock:
            return reply_id in cls._in_flight

    @classmethod
    def wait(cls, reply_id: str, timeout: float) -> bool:
        """Wait for a reply another thread of this process is settling; true when it is settled."""
        with cls._lock:
            done = cls._in_flight.get(reply_id)
        return done is None or done.wait(timeout)

    def follow(self, answering: AnswerStream) -> Iterator[str]:
        """The answer's deltas as they come, each kept (the text an interruption keeps)."""
        self.answering = answering
        self._deltas = iter(answering)
        for delta in self._deltas:
            self.streamed += delta
            yield delta

    def __enter__(self) -> Exchange:
        with self._lock:
            self._in_flight[self.reply.id] = threading.Event()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        if callable(close := getattr(self._deltas, "close", None)):
            close()  # a stream left suspended would hold the model until garbage collection
        failed = isinstance(exc, Exception)
        try:
            self._settle(exc)
            self.store.save(self.conversation)
        except Exception:
            if exc is None or failed:
                raise
            log.exception("could not keep the interrupted reply %s", self.reply.id)  # the stop goes on
        finally:
            with self._lock:
                done = self._in_flight.pop(self.reply.id, None)
            if done is not None:
                done.set()
        return failed and self.reply.status == "failed"

    def _settle(self, exc: BaseException | None) -> None:
        answer = self.answering.answer if self.answering is not None else None
        if answer is not None:  # finished, whatever stopped the drawing of it
            self.conversation.settle(self.reply, "answered", answer.answer, answer=answer)
        elif isinstance(exc, Exception):
            if not isinstance(exc, RagError):
                log.error("answering %r failed", self.question, exc_info=exc)
            self.conversation.settle(self.reply, "failed", self.streamed, error=describe(exc))
        else:
            cause = self.cause(exc) if exc is not None else "the program stopping"
            drafted = self.answering is not None and self.answering.drafted
            note = (f"The check of this answer was interrupted by {cause}: its sentences were not checked, so none has a ✅."
                    if drafted else f"This answer was interrupted by {cause} before it was finished; it was not checked, "
                    "so none of it has a ✅.")
            self.conversation.settle(self.reply, "interrupted", self.streamed, note=note)


def to_markdown(conversation: Conversation) -> str:
    """The conversation as Markdown: each question, its answer with [n] markers and the quoted sources;
    an interrupted or failed reply as far as it got, marked so."""
    lines = [f"# {conversation.title or 'Conversation'}", "", f"_{conversation.created_at} · {conversation.id}_", ""]
    for message in conversation.messages:
        if message.role == "user":
            lines += [f"**Question:** {message.content}", ""]
        elif message.answer is None:
            lines += [f"**Answer ({_UNSETTLED[message.status]}):**", ""] + ([message.content, ""] if message.content.strip() else [])
            lines += [f"_{message.note or message.error or 'No answer was kept.'}_", ""]
        else:
            lines += _answer_lines(message.answer)
    return "\n".join(lines).rstrip() + "\n"


_UNSETTLED = {"pending": "not finished", "interrupted": "interrupted, not checked", "failed": "failed", "answered": "answered"}


def _answer_lines(answer: Answer) -> list[str]:
    lines = ["**Answer:**" + (" (refused)" if answer.refused else ""), "", answer.answer, ""]
    for c in answer.citations:
        mark = "✅" if c.verified else "⚠️"
        quote = " ".join(c.quote.split())
        lines += [f"> [{c.n}] {mark} {c.source}: “{quote}”"]
    return lines + ([""] if answer.citations else [])


def to_json(conversation: Conversation) -> str:
    """The conversation's replies as a JSON list: each Answer as `rag ask --json` prints it, and a reply
    that was not answered as {question, answer (the text streamed, unchecked), status, note, error}."""
    out = []
    for message in conversation.messages:
        if message.role == "user":
            continue
        if message.answer is not None:
            out.append(message.answer.model_dump(mode="json"))
        else:
            out.append({"question": conversation.question_of(message), "answer": message.content, "status": message.status,
                        "note": message.note, "error": message.error})
    return json.dumps(out, indent=2, ensure_ascii=False)
