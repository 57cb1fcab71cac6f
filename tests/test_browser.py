"""End to end in a real browser: Debian Chromium driven by Playwright against `streamlit run`."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import free_port, worker_pid

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser, pytest.mark.llm]


@pytest.fixture
def app_url(tmp_path):
    for url, _ in _serve(tmp_path, ROOT / "seeds"):
        yield url


@pytest.fixture
def traced_app(tmp_path):
    """The app with each answer's stages logged (RAG_LOG_LEVEL=INFO): its URL, process and log, for a test that acts mid-answer."""
    for url, proc in _serve(tmp_path, ROOT / "seeds", RAG_LOG_LEVEL="INFO"):
        yield url, proc, tmp_path / "streamlit.log"


@pytest.fixture
def own_corpus_app(tmp_path):
    """The app over a copy of the seeds, which the test may add to."""
    corpus = tmp_path / "corpus"
    shutil.copytree(ROOT / "seeds", corpus)
    for url, _ in _serve(tmp_path, corpus):
        yield url, tmp_path


def _serve(tmp_path: Path, corpus: Path, **extra_env: str):
    port = free_port()
    env = {**os.environ, "RAG_CHROMA_PATH": str(tmp_path / "index"), "RAG_CORPUS_PATH": str(corpus), **extra_env}
    log = open(tmp_path / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    yield url, proc
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


@contextlib.contextmanager
def _open_app(url: str, **context):  # noqa: ANN003, ANN202
    """Chromium on the app's page, once its question box is there (a first start loads the model and index)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw, pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS) as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000}, **context)
        page.goto(url)
        page.get_by_placeholder("Ask about the documents…").wait_for(timeout=240_000)
        yield page


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is installed by `make test`")
def test_chat_answers_with_a_highlighted_verified_snippet(app_url):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    started = time.perf_counter()
    with _open_app(app_url) as page:
        _ask(page, "What did Pashinyan say Armenia was ready to unblock?")
        answer = page.locator('[data-testid="stChatMessage"]').nth(1)
        expect(answer.get_by_text("Sources")).to_be_visible(timeout=120_000)
        print(f"launch to first answer: {time.perf_counter() - started:.1f} s")
        assert "transport links" in answer.inner_text()
        source = answer.locator('[data-testid="stExpander"]').filter(has_text="✅ supported").first
        source.locator("summary").click()
        mark = source.locator("mark").first
        expect(mark).to_be_visible()
        assert "transport links" in mark.inner_text()
        assert "001_1f22d8ffd3c24c03.txt" in source.inner_text()
        page.wait_for_timeout(800)  # let the expander finish opening
        page.screenshot(path=str(ARTIFACTS / "chat.png"))
        source.get_by_text("Show the whole document").click()
        expect(source.locator("mark")).to_have_count(2, timeout=30_000)  # the chunk and the whole document
        in_document = source.locator("mark").nth(1)
        expect(in_document).to_be_visible()  # the expander stays open after the rerun
        assert "to unblock all the transport links" in in_document.inner_text()
        in_document.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "document.png"))


OBSERVATORY = "# The Zorvath observatory\n\nThe Zorvath observatory on Mount Kellan opened in 1987 and holds a 4.2 metre mirror.\n"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is installed by `make test`")
def test_upload_answer_thumbs_down_reload_export_then_the_case_runs_in_eval(own_corpus_app):
    """The loop from the chat to the test set, as a user walks it."""
    from playwright.sync_api import expect

    url, tmp_path = own_corpus_app
    new_doc = tmp_path / "observatory.md"
    new_doc.write_text(OBSERVATORY, encoding="utf-8")
    with _open_app(url, accept_downloads=True) as page:
        box = page.get_by_placeholder("Ask about the documents…")
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(new_doc))
        page.get_by_role("button", name="Add 1 file to the corpus").click()
        expect(page.get_by_text("Added observatory.md")).to_be_visible(timeout=120_000)
        assert (tmp_path / "corpus" / "observatory.md").read_text(encoding="utf-8") == OBSERVATORY
        box.fill("When did the Zorvath observatory open?")
        box.press("Enter")
        answer = page.locator('[data-testid="stChatMessage"]').nth(1)
        expect(answer.get_by_text("Sources")).to_be_visible(timeout=120_000)
        assert "1987" in answer.inner_text() and "observatory.md" in answer.inner_text()
        page.locator('[data-testid="stFeedbackButton"][aria-label="Thumbs down"]').click()
        page.get_by_label("The correct answer (optional)").fill("It opened in 1987.")
        page.get_by_role("button", name="Send feedback").click()
        expect(page.get_by_text("Feedback #1 saved")).to_be_visible(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "feedback.png"))
        assert "?c=" in page.url
        page.reload()
        expect(page.locator('[data-testid="stChatMessage"]').nth(1).get_by_text("Sources")).to_be_visible(timeout=120_000)
        assert "When did the Zorvath observatory open?" in page.locator('[data-testid="stChatMessage"]').nth(0).inner_text()
        with page.expect_download() as download:
            page.get_by_role("button", name="Export as Markdown").click()
        markdown = Path(download.value.path()).read_text(encoding="utf-8")
    assert markdown.startswith("# When did the Zorvath observatory open?") and "1987" in markdown and "observatory.md" in markdown
    env = {**os.environ, "RAG_CHROMA_PATH": str(tmp_path / "index"), "RAG_CORPUS_PATH": str(tmp_path / "corpus")}
    cases = tmp_path / "feedback.yaml"
    rag = [sys.executable, "-m", "rag.cli"]
    subprocess.run([*rag, "feedback", "export", "--to", str(cases)], env=env, check=True, cwd=ROOT)
    assert "It opened in 1987." in cases.read_text(encoding="utf-8")
    ran = subprocess.run([*rag, "eval", "--testset", str(cases), "--llm", "mock"], env=env, cwd=ROOT, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert "cases                                      1  (1 answerable" in ran.stdout


UNBLOCK = "What did Pashinyan say Armenia was ready to unblock?"
MEET = "Who will meet in Moscow next week, according to Putin?"
MESSAGES = '[data-testid="stChatMessage"]'


def _ask(page, question: str) -> None:  # noqa: ANN001
    box = page.get_by_placeholder("Ask about the documents…")
    box.fill(question)
    box.press("Enter")


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is installed by `make test`")
def test_the_next_question_typed_as_the_answer_appears_keeps_both_exchanges(app_url):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    with _open_app(app_url) as page:
        _ask(page, UNBLOCK)
        messages = page.locator(MESSAGES)
        expect(messages.nth(1)).to_contain_text("transport", timeout=120_000)  # the answer's text is streaming
        _ask(page, MEET)  # at once: its sources and ✅ are not drawn yet
        expect(messages).to_have_count(4, timeout=120_000)
        expect(messages.nth(3).get_by_text("Sources")).to_be_visible(timeout=120_000)
        page.screenshot(path=str(ARTIFACTS / "next-question.png"))

        def both_exchanges() -> None:
            expect(messages.nth(1)).to_contain_text("transport", timeout=30_000)
            texts = [messages.nth(i).inner_text() for i in range(4)]
            assert UNBLOCK in texts[0] and "transport" in texts[1], texts
            assert MEET in texts[2] and "Sources" in texts[3], texts

        both_exchanges()
        page.reload()
        expect(messages.nth(3).get_by_text("Sources")).to_be_visible(timeout=120_000)
        expect(messages).to_have_count(4)
        both_exchanges()


def _wait_for_line(log: Path, text: str, after: int, timeout_s: float = 120) -> None:
    """Poll the app's log (past byte `after`) until a line holds `text`; 20 ms apart, so the test acts within the stage."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if text in log.read_text(encoding="utf-8", errors="replace")[after:]:
            return
        time.sleep(0.02)
    raise AssertionError(f"{text!r} never appeared in {log}")


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is installed by `make test`")
def test_a_model_killed_while_an_answer_is_checked_keeps_the_exchange_and_the_next_question_is_answered(traced_app):
    from playwright.sync_api import expect

    url, proc, log = traced_app
    ARTIFACTS.mkdir(exist_ok=True)
    with _open_app(url) as page:
        messages = page.locator(MESSAGES)
        mark = log.stat().st_size
        _ask(page, UNBLOCK)
        _wait_for_line(log, "rag.answer: checking", mark)  # the draft is written; the judge (the model) runs
        os.kill(worker_pid(proc.pid), signal.SIGKILL)
        failed = messages.nth(1)
        expect(failed).to_contain_text("The local model stopped unexpectedly", timeout=60_000)
        expect(failed.get_by_role("button", name="Answer again")).to_be_visible()
        assert UNBLOCK in messages.nth(0).inner_text() and "✅" not in failed.inner_text()
        page.screenshot(path=str(ARTIFACTS / "model-killed.png"))
        _ask(page, MEET)
        expect(messages).to_have_count(4, timeout=120_000)
        expect(messages.nth(3).get_by_text("Sources")).to_be_visible(timeout=240_000)  # the model is restarted first
        page.reload()
        expect(messages.nth(3).get_by_text("Sources")).to_be_visible(timeout=120_000)
        expect(messages).to_have_count(4)
        assert UNBLOCK in messages.nth(0).inner_text() and "The local model stopped unexpectedly" in messages.nth(1).inner_text()
        assert MEET in messages.nth(2).inner_text()
        messages.nth(1).get_by_role("button", name="Answer again").click()  # generation and check, in its place
        expect(messages.nth(1).get_by_text("Sources")).to_be_visible(timeout=120_000)
        expect(messages.nth(1)).not_to_contain_text("stopped unexpectedly")
        expect(messages).to_have_count(4)
        assert "transport links" in messages.nth(1).inner_text() and "✅" in messages.nth(1).inner_text()
