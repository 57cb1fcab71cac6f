"""Reading the corpus folder: documents, cleaned text, metadata and source offsets.

Each file becomes one LlamaIndex `Document` whose text is what a reader sees (markup
residue removed). An `OffsetMap` ties every character of that cleaned text back to the
file, so a quote found in a chunk can be pointed at in the original file.
"""

from __future__ import annotations

import bisect
import hashlib
import html
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Iterator

from llama_index.core import Document, SimpleDirectoryReader
from llama_index.core.readers.base import BaseReader

from rag.errors import CorpusError
from rag.pdf import pdf_text

TEXT_EXTENSIONS = (".txt", ".md", ".markdown", ".rst", ".text")
HTML_EXTENSIONS = (".html", ".htm", ".xhtml")
EXTRACTED_EXTENSIONS = (".pdf", ".docx")  # binary formats: text comes from a LlamaIndex reader
SUPPORTED_EXTENSIONS = TEXT_EXTENSIONS + HTML_EXTENSIONS + EXTRACTED_EXTENSIONS

# Markup residue a reader does not see. Each pattern's match is replaced by group "keep"
# when present (the visible text of a link), by the decoded entity for entities, else
# deleted. Deletion-only cleaning keeps every visible character at a known file offset.
_MARKUP = re.compile(
    r"(?P<tag></?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>)"
    r"|(?P<comment><!--.*?-->)"
    r"|(?P<heading>^[ \t]{0,3}#{1,6}[ \t]+)"
    r"|(?P<bold>\*\*|__(?=\S)|(?<=\S)__)"
    r"|(?P<entity>&(?:[A-Za-z][A-Za-z0-9]{1,31}|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});)",
    re.MULTILINE | re.DOTALL,
)
# In HTML files, what sits in these elements is not text a reader sees; block elements end a line.
_HTML_HIDDEN = re.compile(r"<(script|style|head|template|noscript)\b[^>]*>.*?</\1\s*>|<!DOCTYPE[^>]*>", re.IGNORECASE | re.DOTALL)
_HTML_BLOCK = re.compile(r"</?(p|div|br|li|ul|ol|h[1-6]|tr|table|section|article|header|footer|blockquote|pre|hr)\b[^>]*/?>", re.IGNORECASE)
_LINK = re.compile(r"\[(?P<text>[^\[\]\n]{1,500})\]\((?P<url>[^()\s]{1,2000})\)")

_MONTHS = ("january february march april may june july august september october november december").split()
_DATE_WORDS = re.compile(
    r"\b(?P<month>" + "|".join(m.capitalize() for m in _MONTHS) + r")\s+(?P<day>\d{1,2}),\s+(?P<year>(?:19|20)\d{2})\b"
)
_DATE_ISO = re.compile(r"\b(?P<year>(?:19|20)\d{2})-(?P<month>\d{2})-(?P<day>\d{2})\b")
_URL = re.compile(r"https?://\S+")


@dataclass
class OffsetMap:
    """Maps cleaned-text positions to file positions.

    Stored as runs (clean_start, raw_start, length) of copied text plus single characters
    that replaced a longer raw span (a decoded entity), so a 50 MB file costs a few
    thousand tuples rather than two integers per character.
    """

    clean_starts: list[int] = field(default_factory=list)
    raw_starts: list[int] = field(default_factory=list)
    raw_ends: list[int] = field(default_factory=list)  # raw end of each run
    lengths: list[int] = field(default_factory=list)
    copied: list[bool] = field(default_factory=list)  # False: one char standing for raw_starts..raw_ends

    def add(self, clean_start: int, raw_start: int, raw_end: int, length: int, copied: bool) -> None:
        self.clean_starts.append(clean_start)
        self.raw_starts.append(raw_start)
        self.raw_ends.append(raw_end)
        self.lengths.append(length)
        self.copied.append(copied)

    def _run(self, pos: int) -> int:
        return bisect.bisect_right(self.clean_starts, pos) - 1

    def to_raw_start(self, pos: int) -> int:
        """File offset where the cleaned character at `pos` begins."""
        run = self._run(pos)
        if run < 0:
            return 0
        if not self.copied[run]:
            return self.raw_starts[run]
        return self.raw_starts[run] + (pos - self.clean_starts[run])

    def to_raw_end(self, end: int) -> int:
        """File offset just after the cleaned character at `end - 1`."""
        if end <= 0:
            return 0
        run = self._run(end - 1)
        if not self.copied[run]:
            return self.raw_ends[run]
        return self.raw_starts[run] + (end - self.clean_starts[run])

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The file span holding cleaned text[start:end]."""
        return self.to_raw_start(start), self.to_raw_end(end)

    def to_clean(self, raw_start: int, raw_end: int) -> tuple[int, int]:
        """The cleaned-text range whose characters lie inside file[raw_start:raw_end]."""
        start = self._clean_at_or_after(raw_start)
        return start, max(start, self._clean_end_at_or_before(raw_end))

    def _clean_at_or_after(self, raw_pos: int) -> int:
        run = bisect.bisect_right(self.raw_starts, raw_pos) - 1
        while run > 0 and not self.copied[run] and self.raw_starts[run - 1] == self.raw_starts[run]:
            run -= 1  # an entity that decoded to several characters: take its first
        if run >= 0:
            offset = raw_pos - self.raw_starts[run]
            if (self.copied[run] and offset < self.lengths[run]) or (not self.copied[run] and offset == 0):
                return self.clean_starts[run] + offset
        run += 1
        while run < len(self.clean_starts) and self.raw_starts[run] < raw_pos:
            run += 1
        return self.clean_starts[run] if run < len(self.clean_starts) else self.total

    def _clean_end_at_or_before(self, raw_end: int) -> int:
        run = bisect.bisect_left(self.raw_starts, raw_end) - 1
        if run < 0:
            return 0
        if self.copied[run]:
            return self.clean_starts[run] + min(self.lengths[run], raw_end - self.raw_starts[run])
        return self.clean_starts[run] + 1 if self.raw_ends[run] <= raw_end else self.clean_starts[run]

    @classmethod
    def identity(cls, length: int) -> OffsetMap:
        """Text that is its own source (extracted from a PDF or DOCX)."""
        mapping = cls()
        if length:
            mapping.add(0, 0, length, length, True)
        return mapping

    @property
    def total(self) -> int:
        return self.clean_starts[-1] + self.lengths[-1] if self.clean_starts else 0


@dataclass
class CleanText:
    text: str
    offsets: OffsetMap


def clean_markup(raw: str, html_file: bool = False) -> CleanText:
    """Remove markup residue (HTML tags, bold markers, heading hashes, link syntax, entities).

    For an HTML file, script/style/head elements go with their content and block elements
    become line breaks.

    Written here because LlamaIndex's readers either keep such residue in .txt files or
    drop positions; citations need every visible character tied to its place in the file.
    """
    pieces: list[str] = []
    offsets = OffsetMap()
    clean_len = 0

    def copy(raw_start: int, raw_end: int) -> None:
        nonlocal clean_len
        if raw_end > raw_start:
            pieces.append(raw[raw_start:raw_end])
            offsets.add(clean_len, raw_start, raw_end, raw_end - raw_start, True)
            clean_len += raw_end - raw_start

    def replace(raw_start: int, raw_end: int, text: str) -> None:
        nonlocal clean_len
        for ch in text:
            pieces.append(ch)
            offsets.add(clean_len, raw_start, raw_end, 1, False)
            clean_len += 1

    cursor = 0
    for match in _tokens(raw, html_file):
        kind, start, end, keep = match
        copy(cursor, start)
        if kind == "entity":
            replace(start, end, html.unescape(raw[start:end]))
        elif kind == "block":
            replace(start, end, "\n")
        elif kind == "link":
            text_start, text_end = keep
            copy(text_start, text_end)
        cursor = end
    copy(cursor, len(raw))
    return CleanText("".join(pieces), offsets)


def _tokens(raw: str, html_file: bool = False) -> Iterator[tuple[str, int, int, tuple[int, int]]]:
    """Markup tokens in file order: (kind, start, end, span of visible text kept)."""
    found: list[tuple[str, int, int, tuple[int, int]]] = []
    if html_file:
        found += [("hidden", m.start(), m.end(), (0, 0)) for m in _HTML_HIDDEN.finditer(raw)]
        found += [("block", m.start(), m.end(), (0, 0)) for m in _HTML_BLOCK.finditer(raw)]
    for m in _LINK.finditer(raw):
        found.append(("link", m.start(), m.end(), m.span("text")))
    links = sorted((s, e) for kind, s, e, _ in found if kind == "link")
    link_starts = [s for s, _ in links]
    for m in _MARKUP.finditer(raw):
        inside = bisect.bisect_right(link_starts, m.start()) - 1
        if inside >= 0 and m.start() < links[inside][1]:
            continue  # link syntax is handled as a whole
        found.append((m.lastgroup or "", m.start(), m.end(), (0, 0)))
    found.sort(key=lambda t: (t[1], -t[2]))
    cursor = 0
    for token in found:
        if token[1] >= cursor:
            yield token
            cursor = token[2]


def extract_metadata(raw: str, clean: str, name: str) -> dict[str, str | int]:
    """Title, date and URL where the document states them.

    The title is the first markdown heading or HTML <title>, else the first line. A URL
    alone on its line may have been broken by stray spaces (seen in the seed corpus), so
    the line's spaces are removed.
    """
    meta: dict[str, str | int] = {"title": _title(raw, clean, name)}
    found_date = _date(clean)
    if found_date:
        meta["date"] = found_date
        meta["date_num"] = int(found_date.replace("-", ""))  # Chroma compares numbers, not date strings
    found_url = _url(clean)
    if found_url:
        meta["url"] = found_url
    return meta


def _title(raw: str, clean: str, name: str) -> str:
    heading = re.search(r"^[ \t]{0,3}#{1,6}[ \t]+(.+?)\s*#*\s*$", raw, re.MULTILINE)
    if heading:
        return clean_markup(heading.group(1)).text.strip()
    tag = re.search(r"<title[^>]*>(.*?)</title>", raw, re.IGNORECASE | re.DOTALL)
    if tag and tag.group(1).strip():
        return html.unescape(tag.group(1)).strip()
    for line in clean.splitlines():
        line = line.strip()
        if line:
            return _shorten(line, 90)
    return name


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + "…"


def _date(clean: str) -> str | None:
    head = clean[:4000]
    m = _DATE_WORDS.search(head)
    if m:
        month = _MONTHS.index(m.group("month").lower()) + 1
        return _iso(int(m.group("year")), month, int(m.group("day")))
    m = _DATE_ISO.search(head)
    if m:
        return _iso(int(m.group("year")), int(m.group("month")), int(m.group("day")))
    return None


def _iso(year: int, month: int, day: int) -> str | None:
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return None


def _url(clean: str) -> str | None:
    for line in clean.splitlines():
        stripped = line.strip()
        if stripped.startswith(("http://", "https://")) and " " in stripped and len(stripped.split()) <= 3:
            return "".join(stripped.split())
    m = _URL.search(clean)
    return m.group(0).rstrip(".,;)") if m else None


def decode_text(data: bytes, name: str) -> str:
    """Decode a text file, refusing binary content that only wears a text extension."""
    if b"\x00" in data[:8192]:
        raise CorpusError(f"{name}: looks binary (NUL bytes), skipped.")
    for encoding in ("utf-8-sig", "utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ("utf-8-sig",):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise CorpusError(f"{name}: unknown text encoding, skipped.")
    text = str(best)
    control = sum(1 for ch in text[:8192] if ord(ch) < 32 and ch not in "\t\n\r\f")
    if control > 0.05 * max(1, min(len(text), 8192)):
        raise CorpusError(f"{name}: looks binary (control characters), skipped.")
    return text


class PlainTextReader(BaseReader):
    """Reads text, markdown and HTML as one Document of cleaned text with title/date/url metadata.

    LlamaIndex's MarkdownReader splits a file into header sections and its HTMLTagReader
    keeps only one tag's text; both lose the file offsets citations need, so this reader
    keeps the whole file and an OffsetMap of it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.offsets: dict[str, OffsetMap] = {}

    def load_data(self, file: Path, extra_info: dict | None = None, fs=None) -> list[Document]:  # noqa: ANN001
        path = Path(file)
        raw, cleaned = read_text_file(path)
        meta = {**(extra_info or {}), **extract_metadata(raw, cleaned.text, path.name)}
        self.offsets[str(path)] = cleaned.offsets
        return [Document(text=cleaned.text, metadata=meta)]


def read_text_file(path: Path) -> tuple[str, CleanText]:
    """A text/markdown/HTML file's text and its cleaned form."""
    raw = decode_text(path.read_bytes(), path.name)
    cleaned = clean_markup(raw, html_file=path.suffix.lower() in HTML_EXTENSIONS)
    if not cleaned.text.strip():
        raise CorpusError(f"{path.name}: no text, skipped.")
    return raw, cleaned


def _extracted_text(path: Path) -> str:
    """A PDF's content pages (rag.pdf: no title page, contents or running headers); a DOCX through LlamaIndex's DocxReader."""
    if path.suffix.lower() == ".pdf":
        return pdf_text(path)
    from llama_index.readers.file import DocxReader

    return "\n".join(d.text for d in DocxReader().load_data(path))


class ExtractedTextReader(BaseReader):
    """PDF and DOCX through LlamaIndex's PDFReader/DocxReader, as one Document with metadata.

    There is no text file to point into, so citation offsets refer to the extracted text.
    """

    def load_data(self, file: Path, extra_info: dict | None = None, fs=None) -> list[Document]:  # noqa: ANN001
        path = Path(file)
        text = extract_text(path)
        meta = {**(extra_info or {}), **extract_metadata(text, text, path.name)}
        return [Document(text=text, metadata=meta)]


_EXTRACTED: dict[tuple[str, str], str] = {}  # (content hash, suffix) -> text, oldest first
_EXTRACTED_MAX = 32


def extract_text(path: Path) -> str:
    """A PDF's or DOCX file's text, remembered by content hash for the process's life.

    Extraction is slow (pypdf: ~2.5 s for a 1 MB text PDF) and the same bytes are read again by
    the upload check (in a staging folder), the ingest that follows it, every ingest of the
    folder and each answer that cites the file; the hash costs milliseconds. A changed file has
    another hash. (functools.lru_cache would key on the path too: the staged copy would miss.)"""
    key = (hashlib.sha256(path.read_bytes()).hexdigest(), path.suffix.lower())
    if key not in _EXTRACTED:
        text = _extract(path)
        if len(_EXTRACTED) >= _EXTRACTED_MAX:
            _EXTRACTED.pop(next(iter(_EXTRACTED), None), None)
        _EXTRACTED[key] = text
    return _EXTRACTED[key]


def _extract(path: Path) -> str:
    try:
        text = _extracted_text(path)
    except Exception as exc:  # pypdf and docx2txt raise many kinds of errors on damaged files
        raise CorpusError(f"{path.name}: cannot extract text ({type(exc).__name__}: {exc}), skipped.") from exc
    if not text.strip():
        raise CorpusError(f"{path.name}: no extractable text (a scanned PDF?), skipped.")
    return text


@dataclass
class Skipped:
    file: str
    reason: str


@dataclass
class LoadedCorpus:
    documents: list[Document]
    skipped: list[Skipped]
    offsets: dict[str, OffsetMap]  # doc id -> cleaned-to-file map (text formats only)


def list_files(folder: Path) -> list[Path]:
    """Every visible file under `folder`, recursively, in a stable order."""
    if not folder.is_dir():
        raise CorpusError(
            f"Corpus folder {folder} does not exist. Point corpus.path (RAG_CORPUS_PATH, or `rag ingest PATH`) at a folder of documents."
        )
    hidden = lambda p: any(part.startswith(".") for part in p.relative_to(folder).parts)  # noqa: E731
    return sorted(p for p in folder.rglob("*") if p.is_file() and not hidden(p))


def doc_id(folder: Path, file: Path) -> str:
    """A document's id is its path inside the corpus: stable when the folder moves."""
    return file.resolve().relative_to(folder.resolve()).as_posix()


def file_extractor(text_reader: PlainTextReader) -> dict[str, BaseReader]:
    """The reader for each supported extension."""
    extracted = ExtractedTextReader()
    return {ext: text_reader for ext in TEXT_EXTENSIONS + HTML_EXTENSIONS} | {ext: extracted for ext in EXTRACTED_EXTENSIONS}


def load_file(folder: Path, file: Path, extractor: dict[str, BaseReader]) -> list[Document]:
    """One file as Documents (id = path inside the corpus), read by the reader for its type."""
    name = doc_id(folder, file)
    if file.suffix.lower() not in extractor:
        raise CorpusError(f"{name}: unsupported file type {file.suffix or '(none)'}, skipped.")
    try:
        docs = SimpleDirectoryReader.load_file(
            input_file=file, file_metadata=lambda _: {"file_name": name}, file_extractor=extractor, raise_on_error=True
        )
    except Exception as exc:  # the reader's own error is the cause
        cause = exc.__cause__ or exc
        if isinstance(cause, CorpusError):
            raise cause from None
        if isinstance(cause, OSError):
            raise CorpusError(f"{name}: cannot read ({cause.strerror or cause}), skipped.") from None
        raise CorpusError(f"{name}: unreadable ({cause}), skipped.") from None
    for i, document in enumerate(docs):
        document.id_ = name if len(docs) == 1 else f"{name}#{i + 1}"
        document.excluded_embed_metadata_keys = list(document.metadata)
        document.excluded_llm_metadata_keys = list(document.metadata)
    return docs


def size_problem(file: Path, max_bytes: int) -> str | None:
    try:
        size = file.stat().st_size
    except OSError as exc:
        return f"{file.name}: cannot read ({exc.strerror or exc}), skipped."
    if size > max_bytes:
        return (f"{file.name}: {size / 2**20:.0f} MB is over the {max_bytes / 2**20:.0f} MB limit (corpus.max_file_mb), skipped.")
    return None


def load_corpus(folder: Path, max_bytes: int = 20 * 2**20) -> LoadedCorpus:
    """Every readable file of the folder; unreadable, oversized or unsupported ones are listed with a reason."""
    documents: list[Document] = []
    skipped: list[Skipped] = []
    offsets: dict[str, OffsetMap] = {}
    text_reader = PlainTextReader()
    extractor = file_extractor(text_reader)
    for file in list_files(folder):
        reason = size_problem(file, max_bytes)
        if reason:
            skipped.append(Skipped(doc_id(folder, file), reason))
            continue
        try:
            docs = load_file(folder, file, extractor)
        except CorpusError as exc:
            skipped.append(Skipped(doc_id(folder, file), str(exc)))
            continue
        documents.extend(docs)
        mapping = text_reader.offsets.pop(str(file), None)
        if mapping is not None and len(docs) == 1:
            offsets[docs[0].id_] = mapping
    return LoadedCorpus(documents, skipped, offsets)


def read_source(folder: Path, name: str) -> tuple[str, CleanText]:
    """The file's text and its cleaned form, for mapping citations back to the file."""
    path = folder / name
    if path.suffix.lower() in EXTRACTED_EXTENSIONS:
        text = extract_text(path)
        return text, CleanText(text, OffsetMap.identity(len(text)))
    return read_text_file(path)
