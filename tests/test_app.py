"""The Streamlit chat driven headless by AppTest, with the mock LLM."""

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")


def _start() -> AppTest:
    """A fresh app session (models and index built anew for the current RAG_* settings)."""
    from rag.ui import clear_caches

    clear_caches()
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def app(mock_env):
    return _start()


def _ask(at: AppTest, question: str) -> AppTest:
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    return at


def plain(text: str) -> str:
    """Markdown as a reader sees it: the app backslash-escapes all document and model text."""
    return re.sub(r"\\(.)", r"\1", text)


def _texts(at) -> str:
    return plain(" ".join([m.value for m in at.markdown] + [h.proto.body for h in at.html] + [c.value for c in at.caption]))


def test_question_gets_an_answer_with_highlighted_verified_source(app):
    _ask(app, "What did Pashinyan say Armenia was ready to unblock?")
    messages = app.chat_message
    assert [m.name for m in messages] == ["user", "assistant"]
    text = _texts(app)
    assert "transport links" in text and "[1]" in text
    expanders = [e for e in app.expander if plain(e.label).startswith("[1]")]
    assert expanders and "✅ supported" in expanders[0].label and "001_1f22d8ffd3c24c03.txt" in plain(expanders[0].label)
    snippet = " ".join(h.proto.body for h in app.html)
    assert "<mark>He said Yerevan was ready &quot;to unblock all the transport links" in snippet


def test_a_summary_is_shown_as_bullets_each_on_its_line(app):
    _ask(app, "Summarize the article about the Lachin Corridor checkpoint and the ICJ in three bullet points.")
    [answer] = [m.value for m in app.chat_message[1].markdown if plain(m.value).startswith("- ")]
    bullets = answer.split("  \n")
    assert len(bullets) == 3 and all(plain(b).startswith("- ") for b in bullets)
    assert "summary of 000_ee4045ecc5c71559.txt · " in _texts(app)  # what it read, in the muted line under the answer


def test_a_comparison_shows_each_side_under_its_label_in_bold(app):
    _ask(app, "Compare what the US and the EU have done to help.")
    [answer] = [m.value for m in app.chat_message[1].markdown if "US" in m.value]
    lines = [line.strip() for line in answer.splitlines() if line.strip()]
    assert plain(lines[0]) == "**The US:**" and "**The EU:**" in [plain(line) for line in lines]
    assert not any(line.startswith("**") for line in lines if "[" in line)  # the facts are plain text


def test_thumbs_down_with_a_correction_is_stored_for_the_test_set(app, tmp_path):
    from rag.feedback import FeedbackStore, Problem

    _ask(app, "What did Pashinyan say Armenia was ready to unblock?")
    app.feedback[0].set_value(0).run()  # 👎
    form_radio = app.radio[0]
    form_radio.set_value(Problem.WRONG_SOURCE)
    app.text_area[0].set_value("Transport links through Armenian territory.")
    app.multiselect[0].set_value(["001_1f22d8ffd3c24c03.txt"])
    app.button(key="FormSubmitter:why-" + app.session_state["conversation"].messages[1].id + "-Send feedback").click().run()
    assert not app.exception, app.exception
    [record] = FeedbackStore(tmp_path / "index").records()
    assert record.feedback.rating == -1 and record.feedback.problem is Problem.WRONG_SOURCE
    assert record.feedback.correction == "Transport links through Armenian territory." and record.question.startswith("What did Pashinyan")
    assert record.feedback.sources == ["001_1f22d8ffd3c24c03.txt"]
    assert any("Feedback #1 saved" in plain(c.value) for c in app.caption)
    assert not app.feedback  # the widget gave way to the note


def test_thumbs_up_is_stored_at_once(app, tmp_path):
    from rag.feedback import FeedbackStore

    _ask(app, "What did Pashinyan say Armenia was ready to unblock?")
    app.feedback[0].set_value(1).run()
    assert [r.feedback.rating for r in FeedbackStore(tmp_path / "index").records()] == [1]


def test_a_conversation_survives_a_reload_and_exports(app, tmp_path):
    from rag.conversations import ConversationStore

    _ask(app, "What did Pashinyan say Armenia was ready to unblock?")
    _ask(app, "And what about the transport links?")
    conversation_id = app.query_params["c"]
    assert "Searched for:" in _texts(app)  # the follow-up shows what it was searched as
    reloaded = AppTest.from_file(APP, default_timeout=120)  # a new session: a reload, or the app restarted
    reloaded.query_params["c"] = conversation_id
    reloaded.run()
    assert not reloaded.exception, reloaded.exception
    assert [m.name for m in reloaded.chat_message] == ["user", "assistant"] * 2
    assert "transport links" in _texts(reloaded)
    kept = ConversationStore(tmp_path / "index").get(conversation_id)
    assert kept.title == "What did Pashinyan say Armenia was ready to unblock?"
    assert any(plain(b.label).endswith(kept.title) for b in reloaded.button)  # listed in the sidebar
    downloads = [e for e in reloaded.get("download_button")]
    assert [d.proto.label for d in downloads] == ["Export as Markdown", "Export as JSON"]


def test_a_conversation_is_renamed_and_deleted_from_the_sidebar(app, tmp_path):
    from rag.conversations import ConversationStore

    _ask(app, "What did Pashinyan say Armenia was ready to unblock?")
    app.run()  # the sidebar lists it from the next run
    conversation_id = app.query_params["c"]
    app.button(key=f"rename-{conversation_id}").click().run()
    app.text_input(key="rename-title").set_value("Transport links")
    app.button(key="FormSubmitter:rename-Rename").click().run()
    assert ConversationStore(tmp_path / "index").get(conversation_id).title == "Transport links"
    app.button(key=f"delete-{conversation_id}").click().run()
    assert not app.exception, app.exception
    assert ConversationStore(tmp_path / "index").list() == [] and "c" not in app.query_params
    assert not app.chat_message  # a new chat


def test_follow_up_and_new_chat(app):
    _ask(app, "What did Pashinyan say Armenia was ready to unblock?")
    _ask(app, "What did he say about progress?")
    assert len(app.chat_message) == 4
    assert "making good progress" in _texts(app)
    [new_chat] = [b for b in app.sidebar.button if b.label == "New chat"]
    new_chat.click().run()
    assert len(app.chat_message) == 0


def test_refusal_is_shown_as_such_with_closest_passages(app):
    _ask(app, "What is the population of Armenia?")
    assert app.warning and "couldn't find this in the documents" in plain(app.warning[0].value)
    assert any("Closest passages" in m.value for m in app.markdown)


def test_sidebar_lists_corpus_and_reindexes(app):
    sidebar = plain(" ".join(m.value for m in app.sidebar.markdown) + " ".join(c.value for c in app.sidebar.caption))
    assert "000_ee4045ecc5c71559.txt (11 chunks)" in sidebar and "2 documents" in sidebar
    [reindex] = [b for b in app.sidebar.button if b.label == "Re-index corpus"]
    reindex.click().run()
    assert app.success and "2 unchanged" in plain(app.success[0].value)


def test_backend_failure_shows_error_and_keeps_history(app, monkeypatch):
    _ask(app, "What did Pashinyan say Armenia was ready to unblock?")
    from rag.ui import get_engine
    from rag.settings import load_settings

    engine = get_engine(load_settings())

    class Down:
        def chat(self, messages):
            raise ConnectionError("Connection refused (http://127.0.0.1:9/v1)")

        stream_chat = chat

    good, engine._llm = engine._llm, Down()
    try:
        _ask(app, "Who will meet in Moscow next week?")
    finally:
        engine._llm = good
    assert app.error and "Connection refused" in plain(app.error[0].value)
    assert len(app.chat_message) >= 2  # the earlier answer is still there


def test_bad_configuration_is_an_error_not_a_traceback(monkeypatch, tmp_path):
    monkeypatch.setenv("RAG_LLM_BACKEND", "nonsense")
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    assert at.error and "llm.backend" in plain(at.error[0].value)


def test_document_markup_is_inert(mock_env, monkeypatch, tmp_path):
    corpus = tmp_path / "evil"
    corpus.mkdir()
    (corpus / "evil.txt").write_text(
        "The launch code is <script>alert('x')</script> kept in [the vault](http://evil.example). "
        "The vault door uses <img src=x onerror=alert(1)> a lock &amp; key.\n", encoding="utf-8")
    monkeypatch.setenv("RAG_CORPUS_PATH", str(corpus))
    at = _start()
    _ask(at, "Where is the launch code kept?")
    html_out = " ".join(h.proto.body for h in at.html)
    assert "<script" not in html_out and "<img" not in html_out
    md = " ".join(m.value for m in at.markdown)
    assert "](http" not in md.replace("\\]\\(http", "")  # links only as escaped text


def test_sidebar_switches_the_llm_backend_and_reports_a_down_server(app):
    app.selectbox(key="llm_backend").set_value("openai-compatible").run()
    app.text_input(key="llm_url_openai-compatible").set_value("http://127.0.0.1:9/v1").run()
    assert not app.exception
    assert app.error and "Cannot connect to the server at http://127.0.0.1:9/v1" in plain(app.error[0].value)
    app.selectbox(key="llm_backend").set_value("mock").run()
    assert not app.error
    _ask(app, "What did Pashinyan say Armenia was ready to unblock?")
    assert "transport links" in _texts(app)


def _sidebar_list(folder: str, asking: str | None) -> None:
    """The conversations list as the app draws it before a new chat's first answer (AppTest runs it alone)."""
    from pathlib import Path

    from rag.conversations import Conversation, ConversationStore
    from rag.ui import draw_conversations

    draw_conversations(ConversationStore(Path(folder)), Conversation(), asking=asking)


@pytest.mark.parametrize("asking,shown", [
    ("What did Pashinyan say Armenia was ready to unblock?", "▸ What did Pashinyan say Armenia was ready to unblock? (being answered…)"),
    (None, "None yet: each chat is kept from its first question."),
])
def test_a_new_chat_is_listed_while_its_first_question_is_answered(tmp_path, asking, shown):
    at = AppTest.from_function(_sidebar_list, args=(str(tmp_path), asking))
    at.run()
    assert not at.exception, at.exception
    assert [plain(c.value) for c in at.caption] == [shown]


def test_a_new_chat_is_named_in_the_sidebar_once_answered_and_gets_its_buttons_with_the_next_run(app):
    question = "What did Pashinyan say Armenia was ready to unblock?"
    _ask(app, question)
    sidebar = [plain(c.value) for c in app.sidebar.caption]
    assert f"▸ {question}" in sidebar
    assert not any("None yet" in c or "being answered" in c for c in sidebar)
    conversation_id = app.query_params["c"]
    app.run()
    assert app.button(key=f"open-{conversation_id}").label.endswith(question)
