"""Conversations that outlive the browser tab: kept in the app's database (rag.store), exported as Markdown or JSON.

A conversation is its messages: the user's questions and the Answers to them, whole (citations,
support states, passages), so that it reopens exactly as it was shown and exports with its
sources. The app keys it by `?c=<id>` in the URL, `rag chat --resume <id>` continues it.
"""

from __future__ import annotations

import json
import uuid
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, Field

from rag.errors import QuestionError
from rag.schema import Answer, Turn
from rag.store import connect, rows

TITLE_CHARS = 80


class Message(BaseModel):
    role: str  # "user" or "assistant"
    content: str
    answer: Answer | None = None  # an assistant's whole Answer
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)


class Conversation(BaseModel):
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    title: str = ""
    created_at: str = Field(default_factory=lambda: _now())
    updated_at: str = Field(default_factory=lambda: _now())
    messages: list[Message] = Field(default_factory=list)

    def history(self) -> list[Turn]:
        return [Turn(role=m.role, content=m.content) for m in self.messages]

    def add(self, question: str, answer: Answer) -> Message:
        """The question and its answer; the first question names the conversation."""
        self.messages += [Message(role="user", content=question), reply := Message(role="assistant", content=answer.answer, answer=answer)]
        self.title = self.title or _title(question)
        self.updated_at = _now()
        return reply


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _title(question: str) -> str:
    text = " ".join(question.split())
    return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1].rsplit(" ", 1)[0] + "…"


class ConversationStore:
    """The conversations of one index folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def save(self, conversation: Conversation) -> None:
        """Write the whole conversation (one statement: a reader sees the old or the new one, never half)."""
        with closing(connect(self.folder)) as db:
            db.execute("INSERT INTO conversations (id, title, created_at, updated_at, messages) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT(id) DO UPDATE SET title=excluded.title, updated_at=excluded.updated_at, messages=excluded.messages",
                       (conversation.id, conversation.title, conversation.created_at, conversation.updated_at,
                        json.dumps([m.model_dump(mode="json") for m in conversation.messages])))

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


def to_markdown(conversation: Conversation) -> str:
    """The conversation as Markdown: each question, its answer with [n] markers, and the quoted sources."""
    lines = [f"# {conversation.title or 'Conversation'}", "", f"_{conversation.created_at} · {conversation.id}_", ""]
    for message in conversation.messages:
        if message.answer is None:
            lines += [f"**Question:** {message.content}", ""]
            continue
        answer = message.answer
        lines += ["**Answer:**" + (" (refused)" if answer.refused else ""), "", answer.answer, ""]
        for c in answer.citations:
            mark = "✅" if c.verified else "⚠️"
            quote = " ".join(c.quote.split())
            lines += [f"> [{c.n}] {mark} {c.source}: “{quote}”"]
        lines += [""] if answer.citations else []
    return "\n".join(lines).rstrip() + "\n"


def to_json(conversation: Conversation) -> str:
    """The conversation's Answers as a JSON list (each as `rag ask --json` prints it)."""
    return json.dumps([m.answer.model_dump(mode="json") for m in conversation.messages if m.answer is not None], indent=2,
                      ensure_ascii=False)
