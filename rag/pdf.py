"""A PDF's text as its author wrote it: the pages of content, without the furniture printed on every page.

pypdf, which LlamaIndex's PDFReader wraps, gives each page's text (read here with pypdf itself, for the outline too) with what the layout repeats:
"100 gnuplot 5.4" on top of every even page of gnuplot's manual and "gnuplot 5.4 101" on the
odd ones, and, before the content, a title page and twenty pages of table of contents whose
dot-leader lines ("Plot . . . . . 102") name every topic and so match every question. In small
chunks that furniture is what retrieval finds and what a summary quotes. No package here strips
it (pypdf is the only PDF library; pdfplumber, unstructured and docling are not available), so
two structural signals do, with no word lists:

- front matter: when the PDF has an outline (bookmarks), the pages before its first entry; without
  one, a table of contents (pages most of whose lines end in a page number) that begins on one of
  the first three pages, and the pages before it;
- running headers and footers: a first or last line of a page that recurs, its digits aside,
  on a quarter of the pages or more (and on at least three).

Its headings are kept as the author marked them. Extracted text wraps every line alike, so a
heading ("Smooth" on page 111 of gnuplot's manual) reads as the first line of the paragraph under
it and `rag.outline`, which finds headings by their shape (a line standing alone), found none of
the manual's 648. The outline names each one and its page: a line of that page (or the next,
where a bookmark points at the page before) that is the bookmark's title is set apart by blank
lines, so summaries and named sections read the manual by its own sections.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pypdf

EDGE_LINES = 2  # lines at the top and at the bottom of a page where running headers and footers stand
FURNITURE_SHARE = 0.25  # a line at a page's edge this common (digits aside) is the layout's, not the author's
MIN_FURNITURE_PAGES = 3
_DIGITS = re.compile(r"\d+")
_NUMBER = re.compile(r"^(?:[ivxlc]+|\d+(?:\.\d+)*)\.?\s+(?=\S)")  # "iv ", "2.3 " before a title's words
_TOC_LINE = re.compile(r"\S.*?(?:\s*\.){2,}\s*\d+\s*$|\S.*\s\d{1,4}\s*$")  # "Plot . . . 102", "Plot 102"


def pdf_text(path: Path) -> str:
    """The content pages' text, joined, without running headers and footers."""
    reader = pypdf.PdfReader(path)
    pages = [page.extract_text() or "" for page in reader.pages]
    bookmarks = _outline(reader)
    start = _content_start(bookmarks, pages)
    pages = pages[start:]
    furniture = _furniture(pages)
    titles = _titles(bookmarks)
    return "\n".join(_headings_apart(_without(page, furniture), titles.get(start + i - 1, set()) | titles.get(start + i, set()))
                     for i, page in enumerate(pages))


def _content_start(bookmarks: list[tuple[str, int]], pages: list[str]) -> int:
    """The first page of content: the outline's first entry, else the page after a table of contents
    that begins on one of the first three pages (a title or copyright page may stand before it)."""
    first = min((page for _, page in bookmarks), default=None)
    if first is not None and first < len(pages) // 2:  # an outline that starts late is not the content's start
        return first
    start = next((i for i in range(min(3, len(pages) // 2)) if _is_toc(pages[i])), None)
    if start is None:
        return 0
    while start < len(pages) // 2 and _is_toc(pages[start]):
        start += 1
    return start


def _outline(reader: pypdf.PdfReader) -> list[tuple[str, int]]:
    """Each bookmark's title and page (0-based), in the outline's order; none when it is unreadable."""
    def walk(items: list) -> list[tuple[str, int]]:  # noqa: ANN001
        found = []
        for item in items:
            if isinstance(item, list):
                found += walk(item)
            else:
                try:
                    page = reader.get_destination_page_number(item)
                except Exception:  # noqa: BLE001 - a broken bookmark: pypdf raises several kinds
                    continue
                if page is not None and page >= 0:
                    found.append((str(item.title or ""), page))
        return found

    try:
        return walk(reader.outline)
    except Exception:  # noqa: BLE001 - an unreadable outline is no outline
        return []


def _titles(bookmarks: list[tuple[str, int]]) -> dict[int, set[str]]:
    """The bookmarks' titles (spacing and case aside) by the page they point at, each also without
    its number: the bookmark "IV Terminal types" is printed "Part IV" over "Terminal types"."""
    titles: dict[int, set[str]] = {}
    for title, page in bookmarks:
        if name := _norm(title):
            titles.setdefault(page, set()).update({name, _NUMBER.sub("", name)} - {""})
    return titles


def _norm(line: str) -> str:
    return " ".join(line.split()).lower()


def _headings_apart(page: str, titles: set[str]) -> str:
    """The page with each line that is a bookmark's title standing alone, between blank lines."""
    if not titles:
        return page
    return "\n".join(f"\n{line}\n" if _norm(line) in titles else line for line in page.splitlines())


def _is_toc(page: str) -> bool:
    lines = [line for line in page.splitlines() if line.strip()]
    return len(lines) >= 5 and sum(bool(_TOC_LINE.match(line)) for line in lines) >= 0.6 * len(lines)


def _key(line: str) -> str:
    return " ".join(_DIGITS.sub("#", line).split())


def _edges(page: str) -> list[str]:
    lines = [line for line in page.splitlines() if line.strip()]
    return lines[:EDGE_LINES] + lines[-EDGE_LINES:] if len(lines) > 2 * EDGE_LINES else lines


def _furniture(pages: list[str]) -> set[str]:
    """The edge lines (digits as #) that recur on enough pages to be the layout's."""
    counts = Counter(key for page in pages for key in {_key(line) for line in _edges(page)})
    least = max(MIN_FURNITURE_PAGES, FURNITURE_SHARE * len(pages))
    return {key for key, n in counts.items() if n >= least and key}


def _without(page: str, furniture: set[str]) -> str:
    """The page without its furniture lines, looked for at its top and bottom only."""
    lines = page.splitlines()
    edges = set(_edges(page))
    return "\n".join(line for line in lines if not (line in edges and _key(line) in furniture))
