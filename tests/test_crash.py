"""A native crash of the embedded model is an error, not an outage, in every door.

The model's worker process is killed with SIGSEGV or SIGKILL while it streams an answer (as
ggml's AMX crash or the OOM killer would): the door shows "The local model stopped
unexpectedly (signal N); it is being restarted", keeps the conversation, and answers the next
question from a restarted model.
"""

from __future__ import annotations

import gc
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import worker_pid
from rag.answer import ask
from rag.errors import ModelCrashed
from rag.settings import load_settings
from rag.worker import LocalModel

pytestmark = pytest.mark.llm

QUESTION = "What did Pashinyan say Armenia was ready to unblock?"
MESSAGE = "The local model stopped unexpectedly (signal {}); it is being restarted."


def kill_when_streaming(llm: LocalModel, sig: int) -> threading.Thread:
    """Kill the model's process as soon as the tokens of the next answer start arriving."""

    def run() -> None:
        assert llm.streaming.wait(timeout=300), "no answer started streaming"
        os.kill(llm.pid, sig)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def crash_engine(tmp_path: Path, embedder):
    from rag.engine import build_engine
    from rag.answer import warm_up

    settings = load_settings(overrides={"corpus": {"path": str(Path(__file__).parent.parent / "seeds")},
                                        "chroma": {"path": str(tmp_path / "index")}})
    engine = build_engine(settings, embed_model=embedder)
    warm_up(engine)
    yield engine
    engine.llm.close()


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL])
def test_a_crash_mid_answer_is_an_error_and_the_next_question_is_answered(crash_engine, sig):
    llm = crash_engine.llm
    first = llm.pid
    killer = kill_when_streaming(llm, sig)
    with pytest.raises(ModelCrashed) as crash:
        ask(crash_engine, QUESTION)
    killer.join()
    assert str(crash.value) == MESSAGE.format(int(sig))
    answer = ask(crash_engine, QUESTION)
    assert not answer.refused and "transport" in answer.answer and answer.citations
    assert llm.pid not in (None, first)


def test_a_model_killed_while_idle_is_replaced_without_failing_the_question(crash_engine):
    llm = crash_engine.llm
    os.kill(llm.pid, signal.SIGKILL)
    time.sleep(0.5)
    answer = ask(crash_engine, QUESTION)
    assert not answer.refused and "transport" in answer.answer


def test_eval_records_the_crashed_case_as_an_error_and_goes_on(crash_engine):
    from rag.evaluate import Case, evaluate

    cases = [
        Case(id=f"c{i}", question=q, reference_answer=r, expected_keywords=[k], expected_sources=["001_1f22d8ffd3c24c03.txt"])
        for i, (q, r, k) in enumerate([
            (QUESTION, "all the transport links in the region", "transport"),
            ("What did Pashinyan say about progress?", "good progress was made", "progress"),
            (QUESTION, "all the transport links in the region", "transport"),
        ])
    ]

    def progress(done: int, total: int, result) -> None:  # noqa: ANN001
        if done == 1:
            kill_when_streaming(crash_engine.llm, signal.SIGSEGV)

    report = evaluate(crash_engine, cases, progress)
    errors = [c["error"] for c in report["cases"]]
    assert errors[0] is None and errors[2] is None
    assert errors[1] == MESSAGE.format(11)
    assert report["summary"]["errors"] == 1
    assert report["cases"][2]["correct"]


def test_streamlit_shows_the_crash_keeps_the_chat_and_answers_after_restart(monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    from rag.ui import clear_caches

    monkeypatch.setenv("RAG_CORPUS_PATH", str(Path(__file__).parent.parent / "seeds"))
    monkeypatch.setenv("RAG_CHROMA_PATH", str(tmp_path / "index"))
    clear_caches()
    gc.collect()  # models of earlier app tests are closed
    at = AppTest.from_file(str(Path(__file__).parent.parent / "streamlit_app.py"), default_timeout=300)
    at.run()
    at.chat_input[0].set_value(QUESTION).run()
    assert not at.exception and not at.error
    [llm] = [o for o in gc.get_objects() if type(o) is LocalModel and o.pid is not None]  # the app's model
    kill_when_streaming(llm, signal.SIGSEGV)
    at.chat_input[0].set_value("What did he say about progress?").run()
    assert not at.exception, at.exception
    shown = [re.sub(r"\\(.)", r"\1", e.value) for e in at.error]  # the app escapes markdown
    assert any(MESSAGE.format(11) in text for text in shown), shown
    assert [m.name for m in at.chat_message][:2] == ["user", "assistant"]  # the earlier exchange is still shown
    at.chat_input[0].set_value(QUESTION).run()
    assert not at.exception, at.exception
    assert [m.name for m in at.chat_message] == ["user", "assistant"] * 3  # the failed exchange stays, with its error
    assert len(at.error) == 1 and MESSAGE.format(11) in re.sub(r"\\(.)", r"\1", at.error[0].value)
    assert "transport" in " ".join(m.value for m in at.markdown)
    llm.close()
    clear_caches()


def _reader(stream) -> queue.Queue:  # noqa: ANN001
    """Characters of a process's output as they come (the chat prints tokens without newlines)."""
    chars: queue.Queue = queue.Queue()

    def run() -> None:
        while ch := stream.read(1):
            chars.put(ch)

    threading.Thread(target=run, daemon=True).start()
    return chars


def _read_until(chars: queue.Queue, marker: str, timeout: float = 300) -> str:
    text, deadline = "", time.monotonic() + timeout
    while not text.endswith(marker):
        text += chars.get(timeout=max(0.1, deadline - time.monotonic()))
    return text


def test_rag_chat_survives_a_model_crash_mid_answer(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAG_CORPUS_PATH": str(Path(__file__).parent.parent / "seeds"),
           "RAG_CHROMA_PATH": str(tmp_path / "index")}
    chat = subprocess.Popen([str(Path(sys.executable).parent / "rag"), "chat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    chars = _reader(chat.stdout)
    try:
        _read_until(chars, "you> ")
        chat.stdin.write(QUESTION + "\n")
        chat.stdin.flush()
        assert "transport" in _read_until(chars, "you> ")
        chat.stdin.write("What did he say about progress?\n")
        chat.stdin.flush()
        _read_until(chars, "bot> ")
        chars.get(timeout=120)  # the first token of the answer
        os.kill(worker_pid(chat.pid), signal.SIGSEGV)
        assert f"Error: {MESSAGE.format(11)}" in _read_until(chars, "you> ")
        chat.stdin.write(QUESTION + "\n")
        chat.stdin.flush()
        after = _read_until(chars, "you> ")
        assert "transport" in after and "Error" not in after
        chat.stdin.write("/quit\n")
        chat.stdin.flush()
        assert chat.wait(timeout=60) == 0
    finally:
        chat.kill()


def test_rag_eval_records_a_crash_as_that_case_s_error_and_finishes(tmp_path):
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "- {id: first, question: 'What did Pashinyan say Armenia was ready to unblock?', reference_answer: transport links, expected_keywords: [transport]}\n"
        "- {id: crashed, question: 'Who will meet in Moscow next week, according to Putin?', reference_answer: deputy prime ministers, expected_keywords: [deputy]}\n"
        "- {id: after, question: 'What did Pashinyan say Armenia was ready to unblock?', reference_answer: transport links, expected_keywords: [transport]}\n"
    )
    env = {**os.environ, "RAG_CORPUS_PATH": str(Path(__file__).parent.parent / "seeds"), "RAG_CHROMA_PATH": str(tmp_path / "index"),
           "RAG_LOG_LEVEL": "INFO"}  # each answer's stages on stderr: the kill lands in a known one
    run = subprocess.Popen([str(Path(sys.executable).parent / "rag"), "eval", "--testset", str(cases), "--json-out", str(tmp_path / "r.json")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        stderr = _reader(run.stderr)
        _read_until(stderr, "first: pass")
        _read_until(stderr, "rag.answer: checking")  # the second case's draft is written; the model judges it
        os.kill(worker_pid(run.pid), signal.SIGSEGV)
        assert run.wait(timeout=300) == 0
    finally:
        run.kill()
    report = json.loads((tmp_path / "r.json").read_text())
    assert [c["error"] for c in report["cases"]] == [None, MESSAGE.format(11), None]
    assert report["cases"][2]["correct"] and report["summary"]["errors"] == 1


def test_a_model_that_keeps_crashing_is_started_again_only_when_asked(tmp_path):
    from rag.backends import build_llm
    from rag.settings import LLMSettings

    llm = build_llm(LLMSettings(model="smollm2-135m"), tmp_path)
    try:
        messages = []
        for _ in range(3):
            deadline = time.monotonic() + 120
            while llm.pid is None and time.monotonic() < deadline:  # the restart after the last crash
                time.sleep(0.05)
            pid = llm.pid
            os.kill(pid, signal.SIGSTOP)  # the request is sent, then the model dies before it answers
            threading.Timer(0.3, os.kill, (pid, signal.SIGKILL)).start()
            with pytest.raises(ModelCrashed) as crash:
                llm.count_tokens("one two three")
            messages.append(str(crash.value))
        assert messages[:2] == [MESSAGE.format(9)] * 2
        assert messages[2].startswith("The local model stopped unexpectedly (signal 9), 3 times in 5 minutes; "
                                      "it will be started again with the next question.")
        assert llm.pid is None  # no restart in the background this time
        assert llm.count_tokens("one two three") > 0 and llm.pid is not None
    finally:
        llm.close()
