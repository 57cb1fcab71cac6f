"""With the default settings nothing may connect beyond loopback."""

import ipaddress
from pathlib import Path
import socket

import pytest

from rag.cli import main


@pytest.fixture
def loopback_only(monkeypatch):
    attempts: list[object] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def allowed(address) -> bool:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host.startswith("/"):
            return True  # unix socket
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return host == "localhost"

    def guard(real):
        def connect(self, address):
            if self.family in (socket.AF_INET, socket.AF_INET6) and not allowed(address):
                attempts.append(address)
                raise OSError(f"blocked non-loopback connection to {address}")
            return real(self, address)

        return connect

    def no_dns(host, *args, **kwargs):
        if host not in (None, "localhost", "127.0.0.1", "::1"):
            attempts.append(host)
            raise socket.gaierror(f"blocked DNS lookup of {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket.socket, "connect", guard(real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guard(real_connect_ex))
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    return attempts


def test_ingest_and_ask_stay_on_this_machine(mock_env, loopback_only, monkeypatch, tmp_path, corpus, capsys):
    assert main(["ingest"]) == 0
    assert main(["ask", "Who will meet in Moscow next week?", "--json"]) == 0
    testset = Path(__file__).resolve().parent.parent / "eval" / "testset.yaml"
    assert main(["eval", "--testset", str(testset), "--limit", "3", "--html-out", str(tmp_path / "r.html")]) == 0
    assert loopback_only == []


@pytest.mark.llm
def test_default_embedded_model_stays_on_this_machine(loopback_only, monkeypatch, tmp_path, corpus, capsys):
    monkeypatch.setenv("RAG_CORPUS_PATH", str(corpus))
    monkeypatch.setenv("RAG_CHROMA_PATH", str(tmp_path / "index"))
    assert main(["ask", "Who will meet in Moscow next week?", "--json"]) == 0
    assert loopback_only == []


def test_the_guard_itself_blocks_lookups(loopback_only):
    with pytest.raises(OSError):
        socket.create_connection(("example.invalid", 80), timeout=1)
    assert loopback_only == ["example.invalid"]


def test_app_start_and_question_stay_on_this_machine(mock_env, loopback_only, monkeypatch, tmp_path, corpus):
    from streamlit.testing.v1 import AppTest

    from rag.ui import clear_caches

    clear_caches()
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "streamlit_app.py"), default_timeout=120)
    at.run()
    at.chat_input[0].set_value("Who will meet in Moscow next week?").run()
    assert not at.exception and len(at.chat_message) == 2
    assert loopback_only == []
