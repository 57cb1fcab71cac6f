"""A document's outline (rag.outline): headings found by their shape in the cleaned text, the
sections they open, their leads, and a section named in a question."""

from __future__ import annotations

import re

from llama_index.core.schema import TextNode

from rag.outline import named_section, outline

# The shape of a cleaned web page: a menu, a title, an introduction, a heading with no prose of its
# own over the first of its sub-headings, a list of short items, a wrapped paragraph, a date line.
PAGE = """Home

Menu

About

Search Documentation
Search Changelog


Appropriate Uses For SQLite

SQLite is not directly comparable to client/server SQL database engines such
as MySQL or PostgreSQL since SQLite is trying to solve a different problem.



Situations Where SQLite Works Well



Embedded devices and the internet of things

Because an SQLite database requires no administration, it works well in devices
that must operate without expert human support. It needs no setup at all.

Application file format

SQLite is often used as the on-disk file format for desktop applications such as
version control systems and financial analysis tools.

The datatypes allowed are these:

INT

INTEGER

TEXT

Every column must have one of these types, and a value that does not fit is refused.

May 26, 2023

The date above is a line of its own and is followed by this sentence of prose.

A wrapped paragraph starts with a short line
and goes on over the next lines of the file, as web pages do.
"""


def chunks_of(text: str, size: int = 180) -> list[TextNode]:
    """The text cut into chunks at paragraph breaks (about `size` characters each), with their offsets."""
    nodes, start = [], 0
    for match in re.finditer(r"\n\s*\n", text + "\n\n"):
        if match.end() - start >= size or match.end() >= len(text):
            piece = text[start:match.start()]
            lead = len(piece) - len(piece.lstrip())
            if piece.strip():
                nodes.append(TextNode(text=piece.strip(), start_char_idx=start + lead, end_char_idx=start + lead + len(piece.strip())))
            start = match.end()
    return nodes


def section(document, heading):
    return next(s for s in document.sections if s.heading == heading)


def test_headings_are_short_lines_standing_alone_before_prose():
    document = outline(chunks_of(PAGE))
    assert [s.heading for s in document.sections] == [
        "Appropriate Uses For SQLite", "Situations Where SQLite Works Well", "Embedded devices and the internet of things",
        "Application file format",
    ]  # not the menu, the list of types, the date line, nor a wrapped paragraph's first line
    assert document.text[document.sections[0].start:].startswith("Appropriate Uses For SQLite")


def test_a_section_runs_to_the_next_heading_and_leads_with_its_first_sentences():
    document = outline(chunks_of(PAGE))
    embedded = section(document, "Embedded devices and the internet of things")
    assert document.section_text(embedded).split() == (
        "Because an SQLite database requires no administration, it works well in devices that must operate "
        "without expert human support. It needs no setup at all.").split()
    one = document.text[slice(*document.lead(embedded))]
    two = document.text[slice(*document.lead(embedded, sentences=2))]
    assert one.startswith("Embedded devices") and one.endswith("expert human support.")
    assert two.endswith("It needs no setup at all.")
    assert document.lead(section(document, "Situations Where SQLite Works Well")) is None  # nothing of its own


def test_leads_join_a_heading_without_prose_to_the_next_and_skip_what_the_opening_holds():
    document = outline(chunks_of(PAGE))
    leads = [" ".join(document.text[a:b].split()) for a, b in document.leads()]
    assert leads[1].startswith("Situations Where SQLite Works Well Embedded devices and the internet of things Because")
    after = section(document, "Application file format").start
    assert [document.text[a:b].split()[0] for a, b in document.leads(after)] == ["Application"]


def test_a_question_names_a_section_by_its_heading_when_it_asks_for_a_section():
    document = outline(chunks_of(PAGE))
    section = named_section("Give me the key points of the application file format section.", document)
    assert section is not None and section.heading == "Application file format"
    assert named_section("Summarize the application file format.", document) is None  # no section asked for
    assert named_section("What does the section on backups say?", document) is None  # no such heading


def test_a_table_of_contents_entry_is_not_the_section_it_names():
    toc = "Contents\n\nOverview\n\nChecking\n\n\n1. Overview\n\nThe overview says what this page covers and why it matters to you.\n\n" \
          "2. Checking\n\nChecking reads every page of the file and reports what it finds there.\n"
    document = outline(chunks_of(toc, size=40))
    section = named_section("Summarize the Checking section.", document)
    assert section is not None and document.section_text(section).strip().startswith("Checking reads every page")


def test_of_the_headings_a_question_holds_the_one_next_to_its_section_word_is_named():
    manual = "Set-show\n\nThe set command sets options and the show command shows what they are.\n\n" \
             "Multiplot\n\nThe multiplot mode places several plots side by side on one page.\n\n" \
             "Terminal\n\nThe terminal command selects the output device for the plots you make.\n\n" \
             "Terminal types\n\nEach terminal type is described in an entry of its own, in the order below.\n"
    document = outline(chunks_of(manual, size=40))
    named = lambda q: named_section(q, document).heading  # noqa: E731
    assert named("Summarize the Multiplot section of the set-show commands.") == "Multiplot"
    assert named("Summarize the section on the set-show commands, multiplot included.") == "Set-show"
    assert named("What does Part IV, Terminal types, of the manual cover?") == "Terminal types"  # the longer name, at the same distance
