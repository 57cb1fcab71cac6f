"""The answering pipeline with the deterministic mock LLM (no model needed)."""

import pytest

from conftest import SEED_A, SEED_B
from rag.answer import YES_NO_HINT, ask, build_messages, stream_answer
from rag.citations import REFUSAL
from rag.errors import BackendError, QuestionError
from rag.schema import Turn


def test_answer_has_verified_citations_with_file_spans(mock_engine, corpus):
    answer = ask(mock_engine, "Who will meet in Moscow next week, according to Putin?")
    assert not answer.refused
    assert "deputy prime ministers" in answer.answer and "[1]" in answer.answer
    [citation] = answer.citations
    assert citation.verified and citation.source in (SEED_A, SEED_B)
    raw = (corpus / citation.source).read_text(encoding="utf-8")
    assert raw[citation.start : citation.end] == citation.quote
    assert answer.retrieved and answer.backend.llm == "mock"
    assert answer.timings.total_s >= answer.timings.retrieve_s > 0


def test_off_topic_question_is_refused_without_the_llm(mock_engine):
    answer = ask(mock_engine, "How do I bake sourdough bread?")
    assert answer.refused and answer.answer == REFUSAL
    assert answer.refusal_reason == "nothing relevant retrieved"
    assert answer.timings.first_token_s is None  # the LLM was never asked


def test_answer_from_an_unrelated_passage_is_refused(mock_engine):
    answer = ask(mock_engine, "What is the population of Armenia?")
    assert answer.refused and "population" in answer.refusal_reason
    assert answer.draft  # what the model said is kept for transparency
    assert answer.passages  # the closest passages are offered


def test_streaming_yields_the_draft_then_the_final_answer(mock_engine):
    stream = stream_answer(mock_engine, "What did Pashinyan say Armenia was ready to unblock?")
    pieces = list(stream)
    assert len(pieces) > 3 and "transport links" in "".join(pieces)
    assert stream.answer is not None and "transport links" in stream.answer.answer
    assert stream.answer.timings.first_token_s is not None


def test_follow_up_is_condensed_with_the_history(mock_engine):
    history = [
        Turn(role="user", content="What did Pashinyan say Armenia was ready to unblock?"),
        Turn(role="assistant", content="Transport links in the region that pass through Armenian territory."),
    ]
    answer = ask(mock_engine, "And what did he say about progress?", history)
    assert answer.standalone_question and "Pashinyan" in answer.standalone_question
    assert not answer.refused and "progress" in answer.answer


@pytest.mark.parametrize("question", ["", "   ", "\x00\x01"])
def test_empty_question_is_a_clear_error(mock_engine, question):
    with pytest.raises(QuestionError, match="empty"):
        ask(mock_engine, question)


def test_marker_only_question_gets_a_clear_message(mock_engine):
    answer = ask(mock_engine, "[3]")
    assert answer.refused and "question in words" in answer.answer


def test_huge_question_is_cut_with_a_notice(mock_engine):
    question = "Who will meet in Moscow next week? " + "filler " * 20000
    answer = ask(mock_engine, question)
    assert answer.notices and "first" in answer.notices[0]
    assert len(answer.question) <= mock_engine.settings.answer.max_question_chars


def test_prompt_is_compact_and_starts_with_the_fixed_system_prompt(mock_engine):
    answer = ask(mock_engine, "Who will meet in Moscow next week, according to Putin?")
    messages = build_messages(answer.question, answer.passages)
    assert messages[0].content == build_messages("other", [])[0].content  # fixed prefix: KV cache reuse
    assert messages[1].content.startswith("Passages:\n[1] ")
    assert sum(len(p.text) for p in answer.passages) < 2500  # compact context (~250 tokens)


def test_backend_failure_is_a_clear_error_and_the_engine_survives(mock_engine):
    class Broken:
        def stream_chat(self, messages):
            raise ConnectionError("connection refused")

    good = mock_engine.llm
    mock_engine._llm = Broken()
    with pytest.raises(BackendError, match="connection refused"):
        ask(mock_engine, "Who will meet in Moscow next week?")
    mock_engine._llm = good
    assert not ask(mock_engine, "Who will meet in Moscow next week?").refused


@pytest.mark.parametrize("question,hinted", [
    ("Did Russia provide the military help Armenia demanded?", True),
    ("  have clashes stopped?", True),
    ("Who will meet in Moscow next week?", False),
    ("Diddy is not in the documents: who is?", False),  # a word that only starts like "did"
])
def test_a_yes_no_question_asks_for_yes_or_no_after_the_question_only(question, hinted):
    messages = build_messages(question, [])
    assert messages[0].content == build_messages("Who?", [])[0].content  # the cached system prompt never changes
    assert messages[1].content.endswith(YES_NO_HINT) is hinted
    assert f"Question: {question}" in messages[1].content


def test_log_level_info_traces_each_answers_stages_and_the_default_stays_quiet(make_settings, embedder, caplog):
    """An operator (or a test acting mid-answer) sets RAG_LOG_LEVEL=INFO to see retrieval, the check and the outcome."""
    import logging

    from rag.engine import build_engine

    caplog.handler.setLevel(logging.NOTSET)  # record whatever the rag loggers let through
    quiet = build_engine(make_settings(), embed_model=embedder)
    ask(quiet, "Who will meet in Moscow next week, according to Putin?")
    assert not [r for r in caplog.records if r.name == "rag.answer"]
    traced = build_engine(make_settings().model_copy(update={"log_level": "INFO"}), embed_model=embedder)
    try:
        ask(traced, "Who will meet in Moscow next week, according to Putin?")
        lines = [r.getMessage() for r in caplog.records if r.name == "rag.answer"]
        assert [line.split()[0] for line in lines] == ["retrieved", "checking", "answered"], lines
    finally:
        logging.getLogger("rag").setLevel(logging.WARNING)
