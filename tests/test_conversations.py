"""Conversations: kept in the index folder's database, listed, renamed, deleted, exported, resumed."""

from __future__ import annotations

import json
from contextlib import closing

import pytest
from streamlit.runtime.scriptrunner_utils.exceptions import RerunException

from rag.answer import ask, stream_answer
from rag.cli import main
from rag.conversations import Conversation, ConversationStore, Exchange, to_json, to_markdown
from rag.errors import ModelCrashed, QuestionError
from rag.schema import Answer, Turn
from rag.store import connect

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


# ---- an exchange: the question kept when asked, the reply settled however the answering ends ----


class Halted:
    """A stream that stops where the test says: its text given, then (drafted) the check begins and never ends."""

    def __init__(self, *deltas: str, drafted: bool = False, fail: Exception | None = None) -> None:
        self.deltas, self.drafted, self.fail, self.answer = deltas, False, fail, None
        self._drafted = drafted

    def __iter__(self):
        yield from self.deltas
        self.drafted = self._drafted
        if self.fail is not None:
            raise self.fail


def test_a_question_is_in_the_store_the_moment_it_is_asked(mock_engine):
    store = ConversationStore(mock_engine.settings.chroma.path)
    conversation = Conversation()
    exchange = Exchange.ask(store, conversation, MEET)
    kept = store.get(conversation.id)  # before any answering: a reload or a crash now keeps the question
    assert [(m.role, m.content, m.status) for m in kept.messages] == [("user", MEET, "answered"), ("assistant", "", "pending")]
    assert kept.title == MEET and exchange.question == MEET and exchange.history == []
    assert "**Answer (not finished):**" in to_markdown(kept)


def test_an_answer_stopped_mid_stream_is_kept_as_streamed_marked_interrupted(mock_engine):
    store = ConversationStore(mock_engine.settings.chroma.path)
    conversation = Conversation()
    exchange = Exchange.ask(store, conversation, UNBLOCK, cause=lambda exc: "your next question")
    with pytest.raises(RerunException):  # Streamlit's stop of the running script goes on
        with exchange:
            deltas = exchange.follow(stream_answer(mock_engine, UNBLOCK))
            shown = next(deltas)
            raise RerunException(None)
    [question, reply] = store.get(conversation.id).messages
    assert reply.status == "interrupted" and reply.content == shown and reply.answer is None
    assert reply.note.startswith("This answer was interrupted by your next question before it was finished")
    assert "none of it has a ✅" in reply.note and not mock_engine.generation_lock.locked()  # the model is free for the next one
    assert conversation.history() == [Turn(role="user", content=UNBLOCK), Turn(role="assistant", content=shown)]
    exported = json.loads(to_json(conversation))
    assert exported == [{"question": UNBLOCK, "answer": shown, "status": "interrupted", "note": reply.note, "error": None}]
    assert "**Answer (interrupted, not checked):**" in to_markdown(conversation) and "✅ " not in to_markdown(conversation)


def test_an_answer_stopped_during_its_check_says_the_check_was_interrupted(mock_engine):
    store = ConversationStore(mock_engine.settings.chroma.path)
    conversation = Conversation()
    with pytest.raises(KeyboardInterrupt):
        with Exchange.ask(store, conversation, UNBLOCK, cause=lambda exc: "Ctrl-C") as exchange:
            for _ in exchange.follow(Halted("Armenia is ready ", "to unblock transport.", drafted=True, fail=KeyboardInterrupt())):
                pass
    reply = store.get(conversation.id).messages[1]
    assert reply.status == "interrupted" and reply.content == "Armenia is ready to unblock transport."
    assert reply.note == "The check of this answer was interrupted by Ctrl-C: its sentences were not checked, so none has a ✅."


def test_an_answer_finished_before_the_stop_reached_the_page_is_kept_whole(mock_engine):
    """The issue's case: the next question arrives while the check runs; Streamlit stops the script
    at its next drawing call, after the Answer is made."""
    store = ConversationStore(mock_engine.settings.chroma.path)
    conversation = Conversation()
    with pytest.raises(RerunException):
        with Exchange.ask(store, conversation, UNBLOCK) as exchange:
            for _ in exchange.follow(stream_answer(mock_engine, UNBLOCK)):
                pass
            raise RerunException(None)  # st.write_stream's last draw
    reply = store.get(conversation.id).messages[1]
    assert reply.status == "answered" and reply.answer.citations and reply.content == reply.answer.answer


def test_a_failed_answer_keeps_its_question_and_error_and_is_answered_again_in_place(mock_engine):
    store = ConversationStore(mock_engine.settings.chroma.path)
    conversation = Conversation()
    conversation.add(MEET, ask(mock_engine, MEET))
    with Exchange.ask(store, conversation, UNBLOCK) as exchange:  # the failure is recorded, not raised
        for _ in exchange.follow(Halted("Armenia is", fail=ModelCrashed("The local model stopped unexpectedly (signal 11); it is being restarted."))):
            pass
    failed = store.get(conversation.id).messages[3]
    assert failed.status == "failed" and failed.content == "Armenia is" and failed.error.startswith("The local model stopped unexpectedly")
    assert "**Answer (failed):**" in to_markdown(conversation) and "signal 11" in to_markdown(conversation)
    with Exchange.again(store, conversation, failed.id) as again:
        assert again.question == UNBLOCK and [t.content for t in again.history] == [MEET, conversation.messages[1].content]
        for _ in again.follow(stream_answer(mock_engine, again.question, again.history)):
            pass
    kept = store.get(conversation.id).messages
    assert [m.id for m in kept] == [m.id for m in conversation.messages] and len(kept) == 4  # in its place
    assert kept[3].status == "answered" and kept[3].answer.citations and kept[3].error is None and kept[3].rev == failed.rev + 2


def test_an_unexpected_error_is_kept_with_its_kind(mock_engine):
    store = ConversationStore(mock_engine.settings.chroma.path)
    conversation = Conversation()
    with Exchange.ask(store, conversation, UNBLOCK) as exchange:
        for _ in exchange.follow(Halted(fail=ValueError("bad chunk"))):
            pass
    assert store.get(conversation.id).messages[1].error == "Unexpected error: ValueError: bad chunk"
    assert conversation.history() == []  # no model answered it: no turn to follow on


def test_two_copies_of_a_conversation_keep_what_each_added(mock_engine):
    """A reloaded tab and the run it left going (or two tabs) write the same conversation."""
    store = ConversationStore(mock_engine.settings.chroma.path)
    left = Conversation()
    left.add(MEET, ask(mock_engine, MEET))
    store.save(left)
    right = store.get(left.id)
    pending = Exchange.ask(store, left, UNBLOCK).reply  # the old tab's answer is being written
    right = store.get(left.id)  # the reloaded tab sees it pending
    right.add("And when?", ask(mock_engine, "And when?", right.history()))
    store.save(right)
    left.settle(pending, "answered", "Transport links.", answer=ask(mock_engine, UNBLOCK))
    store.save(left)  # the old run finishes after the new tab's question
    store.rename(left.id, "Caucasus")
    store.save(right)  # the stale copy neither takes the answer back to pending nor the name back
    kept = store.get(left.id)
    assert [m.content for m in kept.messages if m.role == "user"] == [MEET, UNBLOCK, "And when?"]
    assert kept.messages[3].status == "answered" and kept.title == "Caucasus"


def test_conversations_stored_before_reply_states_load_as_answered(mock_engine):
    store = ConversationStore(mock_engine.settings.chroma.path)
    answer = ask(mock_engine, MEET)
    old = [{"role": "user", "content": MEET, "answer": None, "id": "q"},
           {"role": "assistant", "content": answer.answer, "answer": answer.model_dump(mode="json"), "id": "a"}]
    with closing(connect(store.folder)) as db:
        db.execute("INSERT INTO conversations VALUES ('old', 't', 'x', 'x', ?)", (json.dumps(old),))
    assert [m.status for m in store.get("old").messages] == ["answered", "answered"]


def test_rag_chat_keeps_an_answer_stopped_with_ctrl_c_and_goes_on(mock_env, monkeypatch, capsys, tmp_path):
    from rag.backends import ExtractiveMockLLM

    calls = []
    original = ExtractiveMockLLM.stream_chat

    def interrupted_once(self, messages, **kw):  # noqa: ANN001, ANN003
        for n, chunk in enumerate(original(self, messages, **kw)):
            if n == 1 and not calls:
                calls.append(1)
                raise KeyboardInterrupt  # Ctrl-C while the answer streams
            yield chunk

    monkeypatch.setattr(ExtractiveMockLLM, "stream_chat", interrupted_once)
    lines = iter([UNBLOCK, MEET, "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert main(["chat"]) == 0
    out = capsys.readouterr().out
    assert "(This answer was interrupted by Ctrl-C before it was finished" in out
    [kept] = ConversationStore(tmp_path / "index").list()
    messages = ConversationStore(tmp_path / "index").get(kept.id).messages
    assert [m.status for m in messages] == ["answered", "interrupted", "answered", "answered"]
    assert messages[3].answer.citations


def test_ctrl_c_at_the_chat_prompt_leaves_like_quit(mock_env, monkeypatch, capsys):
    def interrupt(prompt=""):  # noqa: ANN001
        raise KeyboardInterrupt

    monkeypatch.setattr("builtins.input", interrupt)
    assert main(["chat"]) == 0
