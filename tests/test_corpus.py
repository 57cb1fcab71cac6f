from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from conftest import SEED_A, SEED_B
from rag.corpus import clean_markup, load_corpus


def test_markup_residue_removed_but_reader_text_kept():
    raw = "## Title\n\nBy <u>AFP</u> and **Ilya Pitalev/POOL/TASS** &amp; a [link](http://x.org) <!-- note -->end"
    clean = clean_markup(raw).text
    assert clean == "Title\n\nBy AFP and Ilya Pitalev/POOL/TASS & a link end"


def test_every_clean_span_maps_back_to_the_file():
    raw = "By <u>AFP</u> said **bold** &amp; more [text](http://u) done"
    cleaned = clean_markup(raw)
    for start in range(len(cleaned.text)):
        for end in range(start + 1, len(cleaned.text) + 1):
            s, e = cleaned.offsets.span(start, end)
            assert cleaned.offsets.to_clean(s, e) == (start, end)
            if not set(raw[s:e]) & set("<>*&[]()"):
                assert raw[s:e] == cleaned.text[start:end]  # plain text: the slice is the quote


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["word ", "<u>", "</u>", "**", "&amp;", "[a](b)", "\n## ", "é", " ", ".", "<b x='1'>"]), max_size=30), st.data())
def test_offset_map_property(parts, data):
    raw = "".join(parts)
    cleaned = clean_markup(raw)
    if not cleaned.text:
        return
    start = data.draw(st.integers(0, len(cleaned.text) - 1))
    end = data.draw(st.integers(start + 1, len(cleaned.text)))
    s, e = cleaned.offsets.span(start, end)
    assert 0 <= s < e <= len(raw)
    assert cleaned.offsets.to_clean(s, e) == (start, end)


def test_seed_metadata(corpus: Path):
    docs = {d.id_: d for d in load_corpus(corpus).documents}
    b = docs[SEED_B].metadata
    assert b["title"] == "Armenia, Azerbaijan Optimistic on Normalization at Moscow Talks"
    assert b["date"] == "2023-05-26"
    assert b["url"] == "https://www.themoscowtimes.com/2023/05/26/armenia-azerbaijan-optimistic-on-normalization-at-moscow-talks-a81290"
    a = docs[SEED_A].metadata
    assert a["title"].startswith("On May 25, in the Russian capital Moscow")
    assert "date" not in a  # "May 25" without a year is not a date
    assert "<u>" not in docs[SEED_B].text and "**" not in docs[SEED_B].text


def test_bad_files_are_skipped_with_a_reason(corpus: Path):
    (corpus / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 50)
    (corpus / "empty.txt").write_bytes(b"")
    (corpus / "latin1.txt").write_bytes("Café in Yerevan costs 5 €… naïve résumé.".encode("cp1252"))
    (corpus / "image.png").write_bytes(b"\x89PNG")
    (corpus / ".hidden.txt").write_text("secret")
    loaded = load_corpus(corpus)
    ids = {d.id_ for d in loaded.documents}
    reasons = {s.file: s.reason for s in loaded.skipped}
    assert {SEED_A, SEED_B, "latin1.txt"} <= ids
    assert "binary" in reasons["binary.txt"]
    assert "no text" in reasons["empty.txt"]
    assert "unsupported" in reasons["image.png"]
    assert ".hidden.txt" not in ids and ".hidden.txt" not in reasons
    latin = next(d for d in loaded.documents if d.id_ == "latin1.txt")
    assert "Café" in latin.text and "résumé" in latin.text


def test_missing_folder_is_a_clear_error(tmp_path: Path):
    from rag.errors import CorpusError

    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(tmp_path / "nope")


def test_an_edited_pdf_is_read_anew_and_the_same_bytes_elsewhere_read_once(tmp_path: Path, monkeypatch):
    """PDF text is remembered by content hash: an upload's staged copy and the placed file share it,
    and a file changed in place is never answered from its old text."""
    from formats import write_pdf

    import rag.corpus as corpus

    calls = []
    real = corpus._extract
    monkeypatch.setattr(corpus, "_extract", lambda path: calls.append(path) or real(path))
    first = write_pdf(tmp_path / "a.pdf", ["Opening hours", "The museum opens at 10 am."])
    copy = tmp_path / "copy.pdf"
    copy.write_bytes(first.read_bytes())
    assert "10 am" in corpus.extract_text(first) and "10 am" in corpus.extract_text(copy)
    assert len(calls) == 1
    write_pdf(first, ["Opening hours", "The museum opens at 11 am."])
    assert "11 am" in corpus.extract_text(first) and len(calls) == 2


def test_every_format_is_read_cleaned_and_located(tmp_path: Path):
    from formats import write_docx, write_pdf

    from rag.corpus import read_source

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "note.md").write_text("# Launch plan\n\nThe **rocket** starts on 2024-03-01 from _Baikonur_.\n")
    (folder / "page.html").write_text(
        "<!DOCTYPE html><html><head><title>Harbour news</title><style>p {color: red}</style>"
        "<script>var secret = 'do not index';</script></head><body><h1>Harbour</h1>"
        "<p>The ferry leaves at 9&nbsp;am &amp; returns at noon.</p><p>Tickets cost 12 euros.</p></body></html>")
    write_pdf(folder / "report.pdf", ["Quarterly report", "Revenue grew by 14 percent in spring."])
    write_docx(folder / "memo.docx", ["Memo to staff", "The canteen closes at 3 pm on Fridays."])
    loaded = load_corpus(folder)
    assert loaded.skipped == []
    docs = {d.id_: d for d in loaded.documents}
    assert set(docs) == {"note.md", "page.html", "report.pdf", "memo.docx"}

    md = docs["note.md"]
    assert md.metadata["title"] == "Launch plan" and md.metadata["date"] == "2024-03-01"
    assert "**" not in md.text and "The rocket starts" in md.text

    page = docs["page.html"]
    assert page.metadata["title"] == "Harbour news"
    assert "secret" not in page.text and "color" not in page.text and "<p>" not in page.text
    assert "The ferry leaves at 9\xa0am & returns at noon." in page.text
    assert "noon.\n\nTickets" in page.text  # block elements end lines

    assert "Revenue grew by 14 percent in spring." in docs["report.pdf"].text
    assert docs["report.pdf"].metadata["title"] == "Quarterly report"
    assert "The canteen closes at 3 pm on Fridays." in docs["memo.docx"].text

    for name, quote in [("page.html", "Tickets cost 12 euros."), ("report.pdf", "Revenue grew by 14 percent"),
                        ("note.md", "The rocket starts")]:
        raw, cleaned = read_source(folder, name)
        at = cleaned.text.index(quote)
        start, end = cleaned.offsets.span(at, at + len(quote))
        assert cleaned.offsets.to_clean(start, end) == (at, at + len(quote))


def test_damaged_pdf_and_docx_are_skipped_with_a_reason(tmp_path: Path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    (folder / "broken.docx").write_bytes(b"not a zip")
    (folder / "fine.txt").write_text("Still indexed.")
    loaded = load_corpus(folder)
    assert [d.id_ for d in loaded.documents] == ["fine.txt"]
    reasons = {s.file: s.reason for s in loaded.skipped}
    assert "cannot extract text" in reasons["broken.pdf"] or "no extractable text" in reasons["broken.pdf"]
    assert "cannot extract text" in reasons["broken.docx"]


SENTENCES = st.sampled_from([
    "The ferry leaves at nine.", "Tickets cost **12 euros**.", "See <u>the notice</u> board.", "Prices &amp; times vary.",
    "## Harbour news", "A [map](http://example.org/map) is online.", "Ça coûte cher — très cher.", "Rain is likely.",
])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(SENTENCES, min_size=1, max_size=6), min_size=1, max_size=12))
def test_every_chunk_span_slices_the_file_to_the_chunk(tmp_path_factory, paragraphs):
    """Property: a chunk's recorded source span, cleaned, is the chunk's text (over random documents)."""
    from llama_index.core import MockEmbedding

    from rag.index import ingest, open_index
    from rag.settings import load_settings

    root = tmp_path_factory.mktemp("prop")
    (root / "corpus").mkdir()
    raw = "\n\n".join(" ".join(p) for p in paragraphs) + "\n"
    (root / "corpus" / "doc.md").write_text(raw, encoding="utf-8")
    settings = load_settings(overrides={"corpus": {"path": str(root / "corpus")}, "chroma": {"path": str(root / "index")},
                                        "retrieval": {"mode": "vector"}})
    index, _ = ingest(open_index(settings, MockEmbedding(embed_dim=8), "mock:8"))
    got = index.collection.get(include=["documents", "metadatas"])
    cleaned = clean_markup(raw)
    for text, meta in zip(got["documents"], got["metadatas"]):
        start, end = meta["source_start"], meta["source_end"]
        clean_start, clean_end = cleaned.offsets.to_clean(start, end)
        assert cleaned.text[clean_start:clean_end].strip() == text.strip()
