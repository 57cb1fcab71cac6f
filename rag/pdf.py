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
_TOC_LINE = re.compile(r"\S.*?(?:\s*\.){2,}\s*\d+\s*$|\S.*\s\d{1,4}\s*$")  # "Plot . . . 102", "Plot 102"


def pdf_text(path: Path) -> str:
    """The content pages' text, joined, without running headers and footers."""
    reader = pypdf.PdfReader(path)
    pages = [page.extract_text() or "" for page in reader.pages]
    pages = pages[_content_start(reader, pages):]
    furniture = _furniture(pages)
    return "\n".join(_without(page, furniture) for page in pages)


def _content_start(reader: pypdf.PdfReader, pages: list[str]) -> int:
    """The first page of content: the outline's first entry, else the page after a table of contents
    that begins on one of the first three pages (a title or copyright page may stand before it)."""
    first = _first_outline_page(reader)
    if first is not None and first < len(pages) // 2:  # an outline that starts late is not the content's start
        return first
    start = next((i for i in range(min(3, len(pages) // 2)) if _is_toc(pages[i])), None)
    if start is None:
        return 0
    while start < len(pages) // 2 and _is_toc(pages[start]):
        start += 1
    return start


def _first_outline_page(reader: pypdf.PdfReader) -> int | None:
    def walk(items: list) -> list[int]:  # noqa: ANN001
        found = []
        for item in items:
            if isinstance(item, list):
                found += walk(item)
            else:
                try:
                    found.append(reader.get_destination_page_number(item))
                except Exception:  # noqa: BLE001 - a broken bookmark: pypdf raises several kinds
                    continue
        return found

    try:
        pages = [p for p in walk(reader.outline) if p is not None and p >= 0]
    except Exception:  # noqa: BLE001 - an unreadable outline is no outline
        return None
    return min(pages) if pages else None


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
