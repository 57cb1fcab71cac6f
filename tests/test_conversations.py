"""Conversations: kept in the index folder's database, listed, renamed, deleted, exported, resumed."""

from __future__ import annotations

import json

import pytest

from rag.answer import ask
from rag.cli import main
from rag.conversations import Conversation, ConversationStore, to_json, to_markdown
from rag.errors import QuestionError
from rag.schema import Answer

MEET = "Who will meet in Moscow next week, according to Putin?"
UNBLOCK = "What did Pashinyan say Armenia was ready to unblock?"


def _conversation(engine, *questions: str) -> Conversation:
    conversation = Conversation()
    for question in questions:
        conversation.add(question, ask(engine, question, conversation.history()))
    return conversation


def test_a_conversation_is_kept_whole_and_listed_newest_first(mock_engine):
    store = ConversationStore(mock_engine.settings.chroma.path)
    first = _conversation(mock_engine, MEET, "And when?")
    store.save(first)
    second = _conversation(mock_engine, UNBLOCK)
    second.updated_at = "9999-01-01T00:00:00+00:00"
    store.save(second)
    loaded = store.get(first.id)
    assert loaded == first and loaded.title == MEET and [m.role for m in loaded.messages] == ["user", "assistant"] * 2
    assert loaded.messages[1].answer.citations and loaded.messages[3].answer.standalone_question  # the follow-up was rewritten
    assert [c.id for c in store.list()] == [second.id, first.id]
    store.rename(first.id, "  Moscow   talks ")
    assert store.get(first.id).title == "Moscow talks"
    with pytest.raises(QuestionError, match="cannot be empty"):
        store.rename(first.id, "   ")
    store.delete(second.id)
    assert [c.id for c in store.list()] == [first.id] and store.load(second.id) is None
    with pytest.raises(QuestionError, match=f"No conversation '{second.id}'"):
        store.get(second.id)


def test_a_conversation_exports_as_markdown_with_quoted_sources_and_as_json_answers(mock_engine):
    conversation = Conversation()
    for question in (MEET, "Who won the 2024 Olympic marathon?"):
        conversation.add(question, ask(mock_engine, question))
    answer = conversation.messages[1].answer
    markdown = to_markdown(conversation)
    assert markdown.startswith(f"# {MEET}\n") and f"**Question:** {MEET}" in markdown
    assert answer.answer in markdown and "[1]" in markdown
    citation = answer.citations[0]
    assert f"> [1] ✅ {citation.source}: “{' '.join(citation.quote.split())}”" in markdown
    assert "**Answer:** (refused)" in markdown  # the second question is not in the documents
    answers = [Answer.model_validate(a) for a in json.loads(to_json(conversation))]
    assert [a.question for a in answers] == [MEET, "Who won the 2024 Olympic marathon?"] and answers[0] == answer


def test_rag_chat_keeps_the_conversation_and_resumes_it(mock_env, monkeypatch, capsys, tmp_path):
    lines = iter([MEET, "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert main(["chat"]) == 0
    out = capsys.readouterr().out
    [kept] = ConversationStore(tmp_path / "index").list()
    assert f"rag chat --resume {kept.id}" in out
    assert main(["chat", "--list"]) == 0 and kept.id in capsys.readouterr().out
    lines = iter(["And when?", "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert main(["chat", "--resume", kept.id]) == 0
    assert "Resuming “Who will meet in Moscow" in capsys.readouterr().out
    resumed = ConversationStore(tmp_path / "index").get(kept.id)
    assert len(resumed.messages) == 4 and MEET in resumed.messages[3].answer.standalone_question  # the history was used
    assert main(["chat", "--resume", "nope"]) == 2
    assert "No conversation 'nope'" in capsys.readouterr().err
