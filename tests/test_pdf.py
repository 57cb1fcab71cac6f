"""PDFs read as their authors wrote them: no title page, table of contents or running headers in the text."""

from pathlib import Path

import pypdf
from llama_index.core.schema import TextNode

from formats import write_pdf
from rag.outline import named_section, outline
from rag.pdf import pdf_text

CONTENT = [
    ["Opening hours", "The Kellan museum opens at 10 am on weekdays.", "It closes at 6 pm."],
    ["Tickets", "A ticket costs 12 euros; children under 10 enter free."],
    ["Guided tours", "Tours start every hour from the main hall.", "They last 45 minutes."],
    ["The telescope", "The 4.2 metre mirror was installed in 1987."],
    ["Getting there", "Bus 14 stops at the museum gate.", "Parking is free after 5 pm."],
    ["Contact", "Write to the front desk for group visits."],
]
TOC = ["Contents", "Opening hours 3", "Tickets . . . . . . . . 4", "Guided tours 5", "The telescope . . . . 6", "Getting there 7"]


def _handbook(path: Path, outline: bool) -> Path:
    """Title page, contents, then six pages each with a running header and a footer of its own number."""
    pages = [["The Kellan Handbook", "Second edition"], TOC]
    pages += [[f"Kellan Handbook {n}", *lines, f"Page {n} of 8"] for n, lines in enumerate(CONTENT, start=3)]
    width = max(len(p) for p in pages)
    write_pdf(path, [line for p in pages for line in p + [" "] * (width - len(p))], per_page=width)
    if outline:
        writer = pypdf.PdfWriter(clone_from=path)
        for n, lines in enumerate(CONTENT, start=2):
            writer.add_outline_item(lines[0], n)
        writer.write(path)
    return path


def test_the_outline_marks_where_the_content_starts_and_running_headers_and_footers_go(tmp_path):
    text = pdf_text(_handbook(tmp_path / "handbook.pdf", outline=True))
    assert text.split()[:2] == ["Opening", "hours"], text[:80]
    assert "Second edition" not in text and "Contents" not in text and ". . ." not in text
    assert "Kellan Handbook" not in text and "Page " not in text
    for lines in CONTENT:
        assert all(line in text for line in lines)


def test_without_an_outline_the_title_page_and_table_of_contents_still_go(tmp_path):
    text = pdf_text(_handbook(tmp_path / "handbook.pdf", outline=False))
    assert text.split()[:2] == ["Opening", "hours"] and "Kellan Handbook" not in text


def test_a_short_pdf_keeps_every_line_it_has(tmp_path):
    """Too few pages for a line to be the layout's: a two-page letter keeps its repeated sign-off."""
    path = write_pdf(tmp_path / "letter.pdf", ["Dear Ana,", "The mirror is fixed.", "Best, Tom", "P.S. The dome too.", "Best, Tom"],
                     per_page=3)
    assert pdf_text(path).count("Best, Tom") == 2


def _headings(text: str) -> list[str]:
    return [s.heading for s in outline([TextNode(text=text, start_char_idx=0, end_char_idx=len(text))]).sections]


def test_the_bookmarked_headings_stand_apart_so_the_document_reads_by_its_sections(tmp_path):
    """Extracted text wraps a heading like the first line of its paragraph; the bookmarks say which lines head a section."""
    with_outline = pdf_text(_handbook(tmp_path / "handbook.pdf", outline=True))
    assert _headings(with_outline) == [lines[0] for lines in CONTENT]
    document = outline([TextNode(text=with_outline, start_char_idx=0, end_char_idx=len(with_outline))])
    tours = named_section("Summarize the Guided tours section of the handbook.", document)
    assert tours is not None and document.section_text(tours).split() == "Tours start every hour from the main hall. They last 45 minutes.".split()
    assert _headings(pdf_text(_handbook(tmp_path / "plain.pdf", outline=False))) == []  # no bookmarks: nothing says which line heads


def test_a_numbered_bookmark_finds_its_title_printed_without_the_number(tmp_path):
    path = write_pdf(tmp_path / "manual.pdf", ["Part IV", "Terminal types", "Each terminal driver is described in its own entry below this."])
    writer = pypdf.PdfWriter(clone_from=path)
    writer.add_outline_item("IV Terminal types", 0)
    writer.write(path)
    assert "\n\nTerminal types\n\n" in pdf_text(path)
