from pathlib import Path

import pytest

from conftest import SEED_A, SEED_B, label
from rag.corpus import clean_markup
from rag.errors import IndexStateError
from rag.index import ingest, open_index


@pytest.fixture
def index(make_settings, embedder):
    settings = make_settings()
    return open_index(settings, embedder, label(settings))


def _texts(index) -> list[str]:
    return index.collection.get(include=["documents"])["documents"]


def test_first_ingest_adds_every_file_and_second_adds_nothing(index):
    index, first = ingest(index)
    assert sorted(first.added) == [SEED_A, SEED_B]
    assert first.chunks_added == index.count() > 10
    count = index.count()
    index, second = ingest(index)
    assert second.added == second.updated == second.removed == []
    assert sorted(second.unchanged) == [SEED_A, SEED_B]
    assert second.chunks_added == 0 and index.count() == count


def test_chunks_carry_metadata_and_source_offsets(index, corpus: Path):
    index, _ = ingest(index)
    got = index.collection.get(include=["documents", "metadatas"])
    raw = {name: (corpus / name).read_text(encoding="utf-8") for name in (SEED_A, SEED_B)}
    for text, meta in zip(got["documents"], got["metadatas"]):
        source = raw[meta["file_name"]]
        window = source[meta["source_start"] : meta["source_end"]]
        assert clean_markup(window).text.strip() == text.strip()
        assert meta["title"]
    b = [m for m in got["metadatas"] if m["file_name"] == SEED_B][0]
    assert b["date"] == "2023-05-26" and b["url"].startswith("https://www.themoscowtimes.com/")


def test_edit_delete_add_rename_are_reflected_exactly(index, corpus: Path):
    index, _ = ingest(index)
    per_file = index.chunk_counts()

    (corpus / SEED_A).write_text("Zorblax the comet was seen over Yerevan on Tuesday.\n", encoding="utf-8")
    index, report = ingest(index)
    assert report.updated == [SEED_A] and report.unchanged == [SEED_B]
    texts = " ".join(_texts(index))
    assert "Zorblax" in texts and "Shoigu" not in texts  # stale chunks are gone
    assert index.count() == per_file[SEED_B] + 1

    (corpus / SEED_B).rename(corpus / "renamed.txt")
    index, report = ingest(index)
    assert report.added == ["renamed.txt"] and report.removed == [SEED_B]
    assert index.chunk_counts() == {SEED_A: 1, "renamed.txt": per_file[SEED_B]}

    (corpus / "renamed.txt").unlink()
    (corpus / "sub").mkdir()
    (corpus / "sub" / "new.md").write_text("# Note\n\nThe **blue** door is locked.\n", encoding="utf-8")
    index, report = ingest(index)
    assert report.added == ["sub/new.md"] and report.removed == ["renamed.txt"]
    assert sorted(index.chunk_counts()) == [SEED_A, "sub/new.md"]
    assert "The blue door is locked." in " ".join(_texts(index))


def test_empty_folder_empties_the_index(index, corpus: Path):
    index, _ = ingest(index)
    for f in corpus.iterdir():
        f.unlink()
    index, report = ingest(index)
    assert sorted(report.removed) == [SEED_A, SEED_B] and index.count() == 0


def test_leftovers_of_an_interrupted_ingest_are_replaced(index):
    index, _ = ingest(index)
    count = index.count()
    index.docstore.delete_document(SEED_A)  # as if the process died before the docstore was saved
    from rag.index import _persist_docstore

    _persist_docstore(index)
    index, report = ingest(index)
    assert report.added == [SEED_A]
    assert index.count() == count  # no duplicates


def test_large_collections_are_read_and_cleared_in_pages(index, monkeypatch):
    """Past ~30k chunks one unbounded Chroma read fails (too many SQL variables): pages of PAGE."""
    monkeypatch.setattr("rag.index.PAGE", 4)
    index, _ = ingest(index)
    count = index.count()
    real_get, limits = index.collection.get, []

    def get(*args, **kwargs):
        limits.append(kwargs.get("limit"))
        return real_get(*args, **kwargs)

    monkeypatch.setattr(index.collection, "get", get)
    assert count > 8 and len(index.nodes()) == count
    assert sum(index.chunk_counts().values()) == count
    assert limits and all(limit == 4 for limit in limits)  # never one unbounded read
    from rag.index import _persist_docstore

    index.docstore.delete_document(SEED_A)  # leftovers of an interrupted ingest, removed in pages
    _persist_docstore(index)
    index, report = ingest(index)
    assert report.added == [SEED_A] and index.count() == count
    assert len({n.node_id for n in index.nodes()}) == count


def test_a_document_of_more_chunks_than_chroma_takes_at_once_is_ingested(make_settings, corpus):
    """Chroma takes at most client.get_max_batch_size() records a call (5,461 embedded); a 1 MB text
    document makes more chunks. A hashing embedder keeps the test fast; the store is the real one."""
    from llama_index.core.embeddings import MockEmbedding

    settings = make_settings(chunking={"chunk_size": 16})
    big = corpus / "ledger.txt"
    big.write_text("\n".join(f"Entry {i}: the quay at Aldmere shipped {i % 900} tons of salt to Corvan in {1850 + i % 60}."
                             for i in range(6000)), encoding="utf-8")
    index = open_index(settings, MockEmbedding(embed_dim=8), "mock-8")
    limit = index.client.get_max_batch_size()
    index, report = ingest(index)
    chunks = index.chunk_counts()["ledger.txt"]
    assert chunks > limit and "ledger.txt" in report.added and index.count() == sum(index.chunk_counts().values())
    assert report.chunks_added == index.count()


def test_other_embedding_model_is_detected(make_settings, embedder):
    settings = make_settings()
    index, _ = ingest(open_index(settings, embedder, label(settings)))
    other = open_index(settings, embedder, "local:some-other-model")
    with pytest.raises(IndexStateError, match="rag ingest --rebuild"):
        other.check_embedding()
    rebuilt, report = ingest(other)
    assert report.rebuilt and rebuilt.built_with()["embed_model"] == "local:some-other-model"
    rebuilt.check_embedding()
