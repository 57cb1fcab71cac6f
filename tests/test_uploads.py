"""Documents added from the chat window: checked like `rag ingest`, answerable at once, and never half-added."""

from __future__ import annotations

import pytest

from rag.answer import ask
from rag.errors import CorpusError
from rag.uploads import OnConflict, Upload, add_documents, remove_document

FACT = "The Zorvath observatory on Mount Kellan opened in 1987 and holds a 4.2 metre mirror."
QUESTION = "When did the Zorvath observatory open?"


def _snapshot(engine) -> tuple[dict[str, bytes], dict[str, int]]:
    folder = engine.settings.corpus.path
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    return files, engine.index.chunk_counts()


def test_an_uploaded_document_is_answerable_and_cited_at_once(mock_engine):
    result = add_documents(mock_engine, [Upload("observatory.txt", FACT.encode())])
    assert result.added == ["observatory.txt"] and not result.skipped and "1 added" in result.summary
    assert (mock_engine.settings.corpus.path / "observatory.txt").read_text() == FACT
    answer = ask(mock_engine, QUESTION)
    assert not answer.refused and "1987" in answer.answer and answer.citations[0].source == "observatory.txt"


def test_uploads_go_to_the_configured_subfolder(make_settings, embedder):
    from rag.engine import build_engine

    engine = build_engine(make_settings(corpus={"uploads": "uploaded"}), embed_model=embedder)
    assert add_documents(engine, [Upload("observatory.txt", FACT.encode())]).added == ["uploaded/observatory.txt"]
    assert ask(engine, QUESTION).citations[0].source == "uploaded/observatory.txt"


def test_bad_uploads_are_skipped_with_the_ingest_messages_and_nothing_is_written(make_settings, embedder):
    from rag.engine import build_engine

    engine = build_engine(make_settings(corpus={"max_file_mb": 0.001}), embed_model=embedder)
    before = _snapshot(engine)
    result = add_documents(engine, [
        Upload("tool.exe", b"MZ\x90\x00"),
        Upload("fake.txt", b"text\x00\x00binary"),
        Upload("big.txt", b"word " * 1000),
        Upload("../../etc/passwd.txt", b""),
        Upload(".hidden.txt", b"hidden"),
        Upload("scan.pdf", b"%PDF-1.4 not really a pdf"),
    ])
    reasons = {s.file: s.reason for s in result.skipped}
    assert "unsupported file type .exe" in reasons["tool.exe"] and "looks binary" in reasons["fake.txt"]
    assert "over the" in reasons["big.txt"] and "limit (corpus.max_file_mb)" in reasons["big.txt"]
    assert "no text" in reasons["passwd.txt"]  # the name is kept inside the corpus, and an empty file is no document
    assert "not a usable file name" in reasons[".hidden.txt"] and "cannot extract text" in reasons["scan.pdf"]
    assert not result.added and _snapshot(engine) == before


def test_a_name_taken_by_other_content_asks_then_replaces_or_keeps_both(mock_engine):
    folder = mock_engine.settings.corpus.path
    add_documents(mock_engine, [Upload("observatory.txt", FACT.encode())])
    same = add_documents(mock_engine, [Upload("observatory.txt", FACT.encode())])
    assert "same content" in same.skipped[0].reason and not same.added
    newer = FACT.replace("1987", "1991").encode()
    asked = add_documents(mock_engine, [Upload("observatory.txt", newer)])
    assert asked.conflicts == ["observatory.txt"] and (folder / "observatory.txt").read_bytes() == FACT.encode()
    both = add_documents(mock_engine, [Upload("observatory.txt", newer)], OnConflict.KEEP_BOTH)
    assert both.added == ["observatory (2).txt"] and (folder / "observatory (2).txt").read_bytes() == newer
    replaced = add_documents(mock_engine, [Upload("observatory.txt", b"The Zorvath observatory closed in 2020.")], OnConflict.REPLACE)
    assert replaced.replaced == ["observatory.txt"] and "1 updated" in replaced.summary
    assert "2020" in ask(mock_engine, "When did the Zorvath observatory close?").answer


class IngestFails:
    """Wraps an engine's ingest: the first call fails half-way (after the files are in place), later ones work."""

    def __init__(self, engine) -> None:
        self.engine, self.real, self.calls = engine, engine.ingest, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("disk full")
        return self.real(*args, **kwargs)


def test_an_upload_that_fails_half_way_leaves_the_corpus_and_the_index_as_they_were(mock_engine, monkeypatch):
    add_documents(mock_engine, [Upload("observatory.txt", FACT.encode())])
    before = _snapshot(mock_engine)
    monkeypatch.setattr(mock_engine, "ingest", IngestFails(mock_engine))
    uploads = [Upload("second.txt", b"A second document about the Kellan valley."),
               Upload("observatory.txt", b"Replaced content that must not stay.")]
    with pytest.raises(CorpusError, match="disk full.*the corpus and the index are as they were"):
        add_documents(mock_engine, uploads, OnConflict.REPLACE)
    assert _snapshot(mock_engine) == before
    assert "1987" in ask(mock_engine, QUESTION).answer


def test_a_document_is_removed_from_the_folder_and_the_index(mock_engine, monkeypatch):
    add_documents(mock_engine, [Upload("observatory.txt", FACT.encode())])
    assert "1 removed" in remove_document(mock_engine, "observatory.txt")
    assert not (mock_engine.settings.corpus.path / "observatory.txt").exists()
    assert "observatory.txt" not in mock_engine.index.chunk_counts()
    assert ask(mock_engine, QUESTION).refused
    with pytest.raises(CorpusError, match="not a file of the corpus"):
        remove_document(mock_engine, "../outside.txt")


def test_a_removal_that_fails_keeps_the_document(mock_engine, monkeypatch):
    add_documents(mock_engine, [Upload("observatory.txt", FACT.encode())])
    before = _snapshot(mock_engine)
    monkeypatch.setattr(mock_engine, "ingest", IngestFails(mock_engine))
    with pytest.raises(CorpusError, match="it is still in the corpus"):
        remove_document(mock_engine, "observatory.txt")
    assert _snapshot(mock_engine) == before
