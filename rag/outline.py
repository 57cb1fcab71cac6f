"""A document's outline: its headings, the sections they open, and the sentence each section opens with.

A summary of a long page cannot read it whole. Its headings say what it covers ("Application
file format", "Websites", "Data analysis" on SQLite's when-to-use page), and the first sentence
under each says what that part is about. A question may also name a section: "the Western
engagement section".

LlamaIndex's MarkdownNodeParser and HTMLNodeParser split by headings at ingest time, each for
its own format. Our chunks are fixed-size, already in Chroma, and cut from cleaned text that has
lost its markup, so headings are found here by their shape. A heading is a short line standing
alone (a paragraph of its own line), not ending like a sentence, with prose (or one more heading)
after it. That works alike for HTML, Markdown, plain text and extracted PDF text, and needs no
re-index. A site's menu is a run of short lines with no prose after them, so it yields none; a
short line that follows another (the last item of a list of types, "BLOB", "ANY") is no heading
unless it is numbered ("1. Overview" after a table of contents), so a title right after a menu
of one-line items is missed too (the opening reads the text under it anyway).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from llama_index.core.schema import TextNode

from rag.citations import content_terms, prose_sentences
from rag.kinds import SECTION_WORDS

_NUMBERED = re.compile(r"^(?:\d{1,2}\.)+(?:\d{1,2})?\s+(?=[A-Za-z])")  # "8.5. ", "2 " before a heading's words
_HEADING_WORDS = 12
_PROSE_WORDS = 8  # a paragraph with at least this many words is prose
_SENTENCE_WORDS = 5  # a shorter sentence is a label, a caption or a line of code


@dataclass(frozen=True)
class Section:
    heading: str  # the heading line, without its number
    start: int  # the heading's offset in the document's cleaned text
    body: int  # where the text under it starts
    end: int  # where the next heading starts, or the document ends


@dataclass(frozen=True)
class Outline:
    text: str  # the document's cleaned text, rebuilt from its chunks (what lies between chunks as line breaks)
    sections: tuple[Section, ...]

    def section_text(self, section: Section) -> str:
        return self.text[section.body:section.end]

    def lead(self, section: Section, sentences: int = 1) -> tuple[int, int] | None:
        """The span from the section's heading to the end of its first `sentences` sentences of prose
        (all it has, when fewer); None when it holds no prose before the next heading."""
        body = self.text[section.body:section.end]
        ends = [e for s, e in prose_sentences(body) if len(body[s:e].split()) >= _SENTENCE_WORDS]
        return (section.start, section.body + ends[min(sentences, len(ends)) - 1]) if ends else None

    def leads(self, after: int = 0, sentences: int = 1) -> list[tuple[int, int]]:
        """Each section's lead (`lead`) from `after` on. A heading with no prose under it opens the
        next lead: "Situations Where A Client/Server RDBMS May Work Better" goes with the first
        situation under it, which it says what it is a case of."""
        spans, pending = [], None
        for section in self.sections:
            if (span := self.lead(section, sentences)) is None:
                pending = section.start if pending is None else pending
            elif span[1] > after:  # a heading the opening ends with: its lead follows the opening
                spans.append((max(span[0] if pending is None else pending, after), span[1]))
                pending = None
        return spans


def rebuild_text(chunks: Sequence[TextNode], origin: int = 0) -> str:
    """The document's text from its chunks in reading order, at the chunks' own offsets (from
    `origin`: the text of a few neighbouring chunks starts at the first one's offset).

    The splitter drops the whitespace between chunks; a line break stands for it, so a heading at
    a chunk's start still stands alone. Chunks that overlap are laid over each other."""
    buffer: list[str] = []
    for chunk in chunks:
        start = (chunk.start_char_idx or 0) - origin
        text = chunk.get_content()
        if len(buffer) < start:
            buffer.extend("\n" * (start - len(buffer)))
        buffer[start:start + len(text)] = text
    return "".join(buffer)


def outline(chunks: Sequence[TextNode]) -> Outline:
    text = rebuild_text(chunks)
    lines = _merge_empty(_lines(text))
    heads: list[tuple[int, int, str]] = []  # (line start, line end, heading)
    candidates = [_candidate(lines, i) for i in range(len(lines))]
    headings: set[int] = set()
    for i, name in enumerate(candidates):
        if name is None:
            continue
        before, after = _previous_paragraph(lines, i), _next_paragraph(lines, i)
        # not in a list of short lines (a numbered one may follow a table of contents), and before prose or one more heading
        listed = before is not None and candidates[before[0]] is not None and before[0] not in headings
        if (not listed or _NUMBERED.match(lines[i][1].strip())) and after is not None \
                and (_is_prose(after[1]) or (candidates[after[0]] is not None and _prose_after(lines, after[0]))):
            headings.add(i)
            heads.append((lines[i][0], lines[i][0] + len(lines[i][1]), name))
    sections = tuple(
        Section(name, start, end, heads[k + 1][0] if k + 1 < len(heads) else len(text))
        for k, (start, end, name) in enumerate(heads)
    )
    return Outline(text, sections)


def _lines(text: str) -> list[tuple[int, str]]:
    """Each line of `text` with its offset."""
    lines, offset = [], 0
    for line in text.split("\n"):
        lines.append((offset, line))
        offset += len(line) + 1
    return lines


def _merge_empty(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """The lines with every run of blank (or space-only) lines made one empty line."""
    merged: list[tuple[int, str]] = []
    for start, line in lines:
        if line.strip() or not merged or merged[-1][1].strip():
            merged.append((start, line if line.strip() else ""))
    return merged


def _candidate(lines: list[tuple[int, str]], i: int) -> str | None:
    """The heading a line would be, by its shape alone: alone after a blank line, short, not a sentence."""
    line = lines[i][1].strip()
    if not line or (i > 0 and lines[i - 1][1]) or (i + 1 < len(lines) and lines[i + 1][1]):
        return None  # a line of a paragraph: a wrapped sentence's first line is short too
    name = _NUMBERED.sub("", line)
    words = name.split()
    if not 1 <= len(words) <= _HEADING_WORDS or name[-1] in ".,;:!" or not name[0].isupper():
        return None
    if sum(w[0].isalpha() for w in words) * 2 < len(words):  # "May 26, 2023" is a date line
        return None
    return name


def _next_paragraph(lines: list[tuple[int, str]], i: int) -> tuple[int, str] | None:
    """The index of the next non-blank line after line i, and its paragraph's text (up to a blank line)."""
    j = i + 1
    while j < len(lines) and not lines[j][1]:
        j += 1
    if j >= len(lines):
        return None
    k = j
    while k < len(lines) and lines[k][1]:
        k += 1
    return j, " ".join(line for _, line in lines[j:k])


def _previous_paragraph(lines: list[tuple[int, str]], i: int) -> tuple[int, str] | None:
    """The index of the last line of the paragraph before line i, and that line."""
    k = i - 1
    while k >= 0 and not lines[k][1]:
        k -= 1
    return (k, lines[k][1]) if k >= 0 else None


def _prose_after(lines: list[tuple[int, str]], i: int) -> bool:
    after = _next_paragraph(lines, i)
    return after is not None and _is_prose(after[1])


def _is_prose(text: str) -> bool:
    """Whether a paragraph reads as prose: long enough, and mostly lowercase words (not code, not a list of names)."""
    words = text.split()
    return len(words) >= _PROSE_WORDS and sum(w.isalpha() and w.islower() for w in words) * 2 >= len(words)


def named_section(question: str, document: Outline) -> Section | None:
    """The section whose heading the question names, when it asks for a section ("the Western engagement section").

    Of several headings the question holds, the one nearest a section word: "the Multiplot section
    of the set-show commands" names Multiplot, not Set-show; "the section on Smooth (the smooth
    option of plot datafile)" names Smooth, not Datafile. At the same distance, the longer name
    ("Part IV, Terminal types" is Terminal types, not Terminal), then the first in the document."""
    words = re.findall(r"\w[\w'’-]*", question.lower())
    marks = [i for i, word in enumerate(words) if SECTION_WORDS.fullmatch(word)]
    if not marks:
        return None
    asked = " ".join(words)
    named = []
    for k, section in enumerate(document.sections):
        name = " ".join(re.findall(r"\w[\w'’-]*", section.heading.lower()))
        if len(name) < 6 or not document.lead(section):  # a table of contents names it too, with nothing under it
            continue
        for found in re.finditer(rf"(?<!\w){re.escape(name)}(?!\w)", asked):
            first = asked[:found.start()].count(" ")
            last = first + name.count(" ")
            distance = min(max(m - last, first - m) for m in marks)
            named.append((distance, -len(name.split()), k, section))
    return min(named, key=lambda n: n[:3])[3] if named else None
