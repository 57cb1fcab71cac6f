"""End to end in a real browser: Debian Chromium driven by Playwright against `streamlit run`."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser, pytest.mark.llm]


@pytest.fixture
def app_url(tmp_path):
    port = free_port()
    env = {**os.environ, "RAG_CHROMA_PATH": str(tmp_path / "index"), "RAG_CORPUS_PATH": str(ROOT / "seeds")}
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
    yield url
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is installed by `make test`")
def test_chat_answers_with_a_highlighted_verified_snippet(app_url):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        started = time.perf_counter()
        page.goto(app_url)
        box = page.get_by_placeholder("Ask about the documents…")
        box.wait_for(timeout=240_000)  # first start: model and index load behind a spinner
        box.fill("What did Pashinyan say Armenia was ready to unblock?")
        box.press("Enter")
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
        browser.close()
