"""One index, many replicas: processes that share an index see each other's ingests without a restart.

In http mode two Index handles ("replicas", each with its own local folder, as on two
machines) share one real `chroma run` server; in embedded mode two handles share a folder
(the chat window and a `rag ingest` in a terminal).
"""

import threading
import time
from pathlib import Path

import pytest

from conftest import SEED_A, SEED_B, label
from rag.index import Index, ingest, open_index, stored_source_hashes
from rag.retrieve import Retriever

QUESTIONS = ["Who will meet in Moscow next week?", "Lachin Corridor checkpoint ICJ", "What did Shoigu say about the West?"]
NEW_DOC = "comet.txt"
NEW_TEXT = "Zorblax the comet was seen over Yerevan on Tuesday by the Byurakan observatory.\n"


def _replica(make_settings, embedder, folder: Path, port: int | None = None) -> Index:
    chroma = {"path": str(folder)} | ({"mode": "http", "port": port} if port else {})
    settings = make_settings(chroma=chroma)
    return open_index(settings, embedder, label(settings))


def _until(check, seconds: float = 10.0):  # noqa: ANN001, ANN202
    """Poll `check` until it returns something truthy; returns it and the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if got := check():
            return got, time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"not seen within {seconds} s")


def _passages(retriever: Retriever, question: str) -> list[tuple[str, str]]:
    return [(p.node_id, p.text) for p in retriever.retrieve(question).passages]


def _bm25_texts(index: Index, question: str) -> str:
    return " ".join(hit.node.get_content() for hit in index.current().bm25.retrieve(question))


@pytest.fixture
def replicas(chroma_server, make_settings, embedder, tmp_path):
    _, port = chroma_server
    a = _replica(make_settings, embedder, tmp_path / "a", port)
    a, _ = ingest(a)
    return a, _replica(make_settings, embedder, tmp_path / "b", port)


@pytest.mark.server
def test_a_second_replica_retrieves_the_same_passages_and_keeps_nothing_on_disk(replicas, tmp_path):
    a, b = replicas
    ra, rb = Retriever(a), Retriever(b)
    for question in QUESTIONS:
        assert _passages(rb, question) == _passages(ra, question) != []
    assert b.titles() == a.titles() and set(b.titles()) == {SEED_A, SEED_B}
    assert b.source_hashes() == a.source_hashes() == stored_source_hashes(b.settings)  # `rag feedback` on B, no models
    assert list((tmp_path / "b").glob("*")) == []  # nothing retrieval needs is on a replica's disk
    assert [p.name for p in (tmp_path / "a").glob("*")] == ["corpus.ingest.lock"]


@pytest.mark.server
def test_an_ingest_through_either_replica_reaches_the_other_without_restart(replicas, corpus):
    a, b = replicas
    rb = Retriever(b)
    (corpus / NEW_DOC).write_text(NEW_TEXT, encoding="utf-8")
    a, report = ingest(a)
    assert report.added == [NEW_DOC]
    _, seconds = _until(lambda: "Zorblax" in _bm25_texts(b, "Zorblax comet Byurakan"))
    assert seconds < 5
    assert "Zorblax" in rb.retrieve("Zorblax comet Byurakan").passages[0].text
    assert NEW_DOC in b.titles()

    b, again = ingest(b)  # incremental from the other replica: it knows what A indexed
    assert again.added == again.updated == [] and NEW_DOC in again.unchanged
    (corpus / NEW_DOC).unlink()
    b, report = ingest(b)
    assert report.removed == [NEW_DOC]
    _until(lambda: NEW_DOC not in a.titles())
    assert "Zorblax" not in _bm25_texts(a, "Zorblax comet Byurakan")
    assert all(p.source != NEW_DOC for p in Retriever(a).retrieve("Zorblax comet Byurakan").passages)


@pytest.mark.server
def test_a_replica_follows_a_rebuild_through_the_other(replicas):
    a, b = replicas
    rb = Retriever(b)
    before = _passages(rb, QUESTIONS[0])
    a, report = ingest(a, rebuild_first=True)  # drops and recreates the collection on the server
    assert report.rebuilt and b.collection.id != a.collection.id
    _until(lambda: b.current() and b.collection.id == a.collection.id)
    assert _passages(rb, QUESTIONS[0]) == before


@pytest.mark.server
def test_a_replica_answers_without_errors_while_another_ingests(replicas, corpus, embedder):
    from rag.answer import ask
    from rag.engine import build_engine

    a, b = replicas
    engine = build_engine(b.settings, embed_model=embedder)  # the mock LLM
    errors, answers, done = [], [], threading.Event()

    def keep_asking() -> None:
        while not done.is_set():
            try:
                answers.append(ask(engine, "Who will meet in Moscow next week?"))
            except Exception as exc:  # noqa: BLE001 - any error is the failure this test looks for
                errors.append(exc)

    asker = threading.Thread(target=keep_asking)
    asker.start()
    edits = [(corpus / f"note{i}.txt", f"Note {i}: the harbour of Aldmere opened in {1900 + i}.\n" * 40) for i in range(3)]
    try:
        for path, text in [*edits, (corpus / SEED_A, "Zorblax the comet was seen over Yerevan.\n")]:
            path.write_text(text, encoding="utf-8")
            asked = len(answers)
            a, _ = ingest(a)
            _until(lambda: len(answers) > asked + 1 or errors, seconds=60)  # B has answered in this version too
    finally:
        done.set()
        asker.join(timeout=60)
    assert errors == []
    assert all(not answer.refused for answer in answers)  # SEED_B answers it in every version


def test_embedded_processes_sharing_a_folder_follow_each_others_ingests(make_settings, embedder, corpus, tmp_path, monkeypatch):
    a = _replica(make_settings, embedder, tmp_path / "index")
    a, _ = ingest(a)
    b = _replica(make_settings, embedder, tmp_path / "index")
    rebuilt = []
    monkeypatch.setattr(b, "_build_bm25", lambda: rebuilt.append(b))  # B loads the BM25 that A persisted
    assert "Lachin" in _bm25_texts(b, "Lachin Corridor")
    (corpus / NEW_DOC).write_text(NEW_TEXT, encoding="utf-8")
    a, _ = ingest(a)
    _until(lambda: "Zorblax" in _bm25_texts(b, "Zorblax comet Byurakan"), seconds=5)
    assert rebuilt == [] and NEW_DOC in b.titles()
