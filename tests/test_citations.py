import pytest
from hypothesis import given, strategies as st

from rag.citations import (
    attribute,
    content_terms,
    insert_markers,
    is_refusal,
    key_facts,
    locate_quote,
    make_citations,
    split_sentences,
    strip_markers,
)
from rag.corpus import clean_markup
from rag.schema import Passage


def _passage(n: int, text: str, source: str = "a.txt", start: int = 0) -> Passage:
    return Passage(n=n, node_id=f"{source}::{n}", source=source, text=text, score=0.8, start=start, end=start + len(text))




def test_sentences_split_on_lines_and_punctuation():
    text = "Mr. Putin spoke. He said more!\nSource\nComment (0)"
    parts = [text[s:e] for s, e in split_sentences(text)]
    assert parts[-2:] == ["Source", "Comment (0)"]
    assert "He said more!" in parts


def test_model_markers_are_stripped():
    assert strip_markers("Deputy PMs will meet [1][2]. Soon [3, 4].") == ("Deputy PMs will meet. Soon.", [1, 2, 3, 4])


def test_a_step_that_held_only_a_marker_is_not_shown_empty():
    assert strip_markers("1. Meet in Brussels [1].\n2. [4]") == ("1. Meet in Brussels.", [1, 4])
    assert strip_markers("- Talks [1]\n- [2]\n- Peace [3]") == ("- Talks\n- Peace", [1, 2, 3])


@given(st.lists(st.integers(1, 99), max_size=5), st.text(alphabet="abc .", max_size=40))
def test_marker_parsing_roundtrip(numbers, text):
    marked = text + "".join(f"[{n}]" for n in numbers)
    clean, cited = strip_markers(marked)
    assert cited == numbers
    assert "[" not in clean


def test_numbers_and_names_are_key_facts():
    facts = key_facts("The capital is Canberra, with 7.8 million people and 30,000 lives lost.")
    assert {"canberra", "7.8", "30000"} <= facts
    assert "the" not in facts


def test_refusal_phrases():
    assert is_refusal("I couldn't find this in the documents.")
    assert is_refusal("The passages do not mention the population.")
    assert not is_refusal("Deputy prime ministers will meet next week.")


@pytest.mark.parametrize("reply,refusal", [
    ("No, SQLite does not include a separate server process.", False),  # the answer to "Does SQLite include…?"
    ("No. The license does not say royalties are due.", False),
    ("No, the passages do not mention the population.", True),
    ("No information is given about the population.", True),
    ("No, I couldn't find this in the documents.", True),
    ("The population is not mentioned.", True),
])
def test_a_yes_no_answer_that_states_a_negative_fact_is_not_a_refusal(reply, refusal):
    assert is_refusal(reply) is refusal


def test_supported_answer_is_attributed_and_marked(embed):
    passages = [
        _passage(1, "Talks were held in Moscow. The Russian leader said deputy prime ministers will meet next week."),
        _passage(2, "The ensuing conflict claimed some 30,000 lives.", source="b.txt"),
    ]
    answer = "Deputy prime ministers will meet next week."
    result = attribute(answer, "Who will meet next week?", passages, embed)
    [sentence] = result.sentences
    assert sentence.supported and sentence.support[0][0].passage.n == 1
    assert sentence.support[0][0].text == "The Russian leader said deputy prime ministers will meet next week."
    assert insert_markers(answer, result.sentences) == "Deputy prime ministers will meet next week [1]."


def test_invented_facts_are_unsupported(embed):
    passages = [_passage(1, "Armenia and Azerbaijan fought two wars over Nagorno-Karabakh.")]
    result = attribute("Armenia has a population of 2.9 million.", "What is the population of Armenia?", passages, embed)
    assert result.sentences[0].unsupported_facts == {"2.9"}


def test_quote_located_in_the_source_file(embed):
    raw = "## Title\n\nBy <u>AFP</u>\n\nThe **ensuing** conflict claimed some 30,000 lives. Other text."
    cleaned = clean_markup(raw)
    chunk_start = cleaned.text.index("The ensuing")
    chunk = cleaned.text[chunk_start:]
    passages = [_passage(1, chunk, start=chunk_start)]
    result = attribute("Some 30,000 lives were claimed.", "How many lives did the conflict claim?", passages, embed)
    [citation] = make_citations(result.sentences, [True], lambda name: (raw, cleaned))
    assert citation.quote == "The ensuing conflict claimed some 30,000 lives."
    assert raw[citation.start : citation.end] == "The **ensuing** conflict claimed some 30,000 lives."
    assert citation.verified


def test_quote_not_in_file_is_not_verified(embed):
    passages = [_passage(1, "The ensuing conflict claimed some 30,000 lives.")]
    result = attribute("The conflict claimed 30,000 lives.", "How many died?", passages, embed)
    changed = clean_markup("The file was edited since indexing.")
    [citation] = make_citations(result.sentences, [True], lambda name: ("x", changed))
    assert citation.start is None and not citation.verified
    ps = result.sentences[0].support[0][0]
    assert locate_quote(ps, lambda name: None) == (None, None, False)


def test_content_terms_stem_and_normalise():
    assert content_terms("Ministers met; 30,000 died.") == {"minist", "met", "30000", "die"}


def test_a_sentence_that_failed_its_support_check_has_no_verified_citation(embed):
    raw = "The ensuing conflict claimed some 30,000 lives."
    cleaned = clean_markup(raw)
    result = attribute("Some 30,000 lives were claimed.", "How many died?", [_passage(1, raw, start=0)], embed)
    [citation] = make_citations(result.sentences, [False], lambda name: (raw, cleaned))
    assert citation.start == 0 and not citation.verified


def test_a_question_in_a_passage_is_never_cited_as_support(embed):
    faq = "Can I use it in my commercial product without paying royalties? Yes. It is in the public domain."
    result = attribute("You must pay royalties to use it in a commercial product.", "Do I pay royalties?", [_passage(1, faq)], embed)
    assert all(not ps.text.endswith("?") for s in result.sentences for ps, _ in s.support)


def test_a_quote_cut_at_a_chunk_edge_is_read_as_its_whole_sentence():
    from rag.citations import PassageSentence, whole_sentence

    doc = "Intro.\nActually, SQLite will easily do 50,000 INSERT statements per second on an average desktop computer. Next one."
    cleaned = clean_markup(doc)
    start = cleaned.text.index("Actually")
    chunk = cleaned.text[start : start + 60]  # the chunk ends mid-sentence
    ps = PassageSentence(_passage(1, chunk, start=start), 0, len(chunk))
    assert whole_sentence(ps, lambda name: (doc, cleaned)).endswith("on an average desktop computer.")
    assert whole_sentence(ps, lambda name: None) == chunk  # the file is gone: the quote as it is


def test_a_sentence_wrapped_over_lines_in_the_file_is_read_whole():
    from rag.citations import PassageSentence, whole_sentence

    doc = "<p>Actually, SQLite will easily do 50,000 or more INSERT statements per second\n  on an average desktop computer.</p>"
    cleaned = clean_markup(doc, html_file=True)
    start = cleaned.text.index("Actually")
    chunk = cleaned.text[start : cleaned.text.index("second") + 6]
    ps = PassageSentence(_passage(1, chunk, start=start), 0, len(chunk))
    assert " ".join(whole_sentence(ps, lambda name: (doc, cleaned)).split()).endswith("per second on an average desktop computer.")


def test_a_step_is_cited_by_the_whole_sentence_a_page_wraps_over_lines(embed):
    page = ('Use the ".import" command to import CSV data into an SQLite table.\n'
            'The ".import" command takes two arguments which are the\n'
            "source from which data is to be read and the name of the\n"
            "SQLite table into which the data is to be inserted.\n"
            "8.6. Export to CSV\n- one item\n- another")
    result = attribute("Run the .import command with the source file and the name of the table.", "How do I import a CSV file?",
                       [_passage(1, page)], embed)
    [sentence] = result.sentences
    assert sentence.supported
    assert " ".join(sentence.support[0][0].text.split()) == ('The ".import" command takes two arguments which are the source from which '
                                                             "data is to be read and the name of the SQLite table into which the data is to be inserted.")
    assert [page[s:e] for s, e in split_sentences(page)][-3:] == ["Export to CSV", "- one item", "- another"]  # headings and items stay lines


def test_a_steps_opening_verb_is_no_name_to_find_nor_to_cite(embed):
    passages = [_passage(1, 'The ".import" command takes two arguments: the source file and the name of the table.'),
                _passage(2, "To look at the image above, you might run the edit function.", source="b.txt")]
    result = attribute("Run the .import command with the source file and the name of the table.", "How do I import a CSV file?", passages, embed)
    assert [ps.passage.n for ps, _ in result.sentences[0].support] == [1]
    named = attribute("Aliyev said the talks went well.", "What did the leaders say?",
                      [_passage(1, "The talks went well, he said."), _passage(2, "Aliyev spoke in Moscow.", source="b.txt")], embed)
    assert [ps.passage.n for ps, _ in named.sentences[0].support] == [1, 2]  # a name the quote lacks is still cited where it stands


def test_steps_are_numbered_on_when_one_is_left_out():
    from rag.citations import renumber_steps

    assert renumber_steps("1. Open it [1].\n3. Import [2].\n   sqlite> .import a.csv t\n4. Check.") == (
        "1. Open it [1].\n2. Import [2].\n   sqlite> .import a.csv t\n3. Check.")
    assert renumber_steps("A:\n1. x\n3. y\n\nB:\n1. z") == "A:\n1. x\n2. y\n\nB:\n1. z"  # each part its own list
    assert renumber_steps("It took 3. Then 5 more.") == "It took 3. Then 5 more."


def test_a_title_before_a_name_does_not_end_a_sentence():
    from rag.citations import split_sentences

    text = "At the meeting, Mr. Pashinyan and Mr. Aliyev expressed willingness to sign a deal. Clashes continue."
    assert [text[a:b] for a, b in split_sentences(text)] == [
        "At the meeting, Mr. Pashinyan and Mr. Aliyev expressed willingness to sign a deal.", "Clashes continue."]


def test_a_code_line_a_passage_holds_is_supported_as_written_and_its_fences_are_no_sentences(embed):
    passages = [_passage(1, "Foreign key constraints are disabled by default. Enable them with:\nsqlite> PRAGMA foreign_keys = ON;"),
                _passage(2, "The PRAGMA foreign_keys command queries or sets the enforcement.", source="b.txt")]
    answer = "1. Run this command:\n```sql\nPRAGMA  foreign_keys=on;\n```\n2. Then create the table:\n```sql\nCREATE TABLE t(x);\n```"
    result = attribute(answer, "How do I switch foreign key enforcement on?", passages, embed)
    texts = [s.sentence for s in result.sentences]
    assert not any("```" in t for t in texts)
    pragma = next(s for s in result.sentences if s.sentence.startswith("PRAGMA"))
    assert pragma.verbatim and pragma.supported and pragma.support[0][0].text == "PRAGMA foreign_keys = ON;"
    invented = next(s for s in result.sentences if s.sentence.startswith("CREATE"))
    assert not invented.verbatim  # no passage holds it: matched and judged as any sentence
    marked = insert_markers(answer, result.sentences)
    assert "PRAGMA  foreign_keys=on;\n```" in marked  # no marker inside the code
