"""Question kinds (rag.kinds) and the context each broad kind gets (rag.broad), with the mock LLM."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from llama_index.core.base.llms.types import CompletionResponse

from rag.answer import FORM_HINTS, ask, build_messages
from rag.backends import ExtractiveMockLLM
from rag.citations import REFUSAL
from rag.broad import comparison_sides
from rag.grounding import question_words
from rag.kinds import Kind, classify, named_documents, topic_of

LABELLED = Path(__file__).parent.parent / "eval" / "question_kinds.yaml"
SCOPES = Path(__file__).parent.parent / "eval" / "question_scopes.yaml"
FIRST, SECOND = "000_ee4045ecc5c71559.txt", "001_1f22d8ffd3c24c03.txt"


def test_the_classifier_labels_the_hand_labelled_questions():
    rows = yaml.safe_load(LABELLED.read_text(encoding="utf-8"))
    assert len(rows) >= 60 and {r["kind"] for r in rows} == {k.value for k in Kind}
    wrong = [(r["question"], r["kind"], classify(r["question"]).kind.value) for r in rows if classify(r["question"]).kind.value != r["kind"]]
    assert len(wrong) <= 0.05 * len(rows), wrong


def scope_of(question: str, titles: dict[str, str]) -> tuple[str, list[str]]:
    intent = classify(question, titles)
    return ("document" if intent.documents else "corpus" if intent.whole_corpus else "topic"), sorted(intent.documents)


def test_the_classifier_tells_a_named_document_from_the_whole_corpus_and_a_topic():
    labelled = yaml.safe_load(SCOPES.read_text(encoding="utf-8"))
    rows = labelled["questions"]
    assert len(rows) >= 60 and {r["scope"] for r in rows} == {"document", "corpus", "topic"}
    wrong = [(r["question"], r["scope"], found) for r in rows
             if (found := scope_of(r["question"], labelled["titles"][r["corpus"]])) != (r["scope"], sorted(r.get("documents", [])))]
    # 62 of 63 (2026-12-05; 56 when labelled, before ordinals, "every page" and short titles were understood).
    # Missed: "the JSON page" (no title holds the nickname).
    assert len(wrong) <= 0.05 * len(rows), wrong


def test_the_first_or_last_article_is_named_by_its_place_in_the_list():
    titles = {SECOND: "Armenia, Azerbaijan advance", FIRST: "Aliyev sees real grounds for peace"}
    assert classify("Summarize the first article.", titles).documents == (FIRST,)
    assert classify("What does the last document say about the ICJ?", titles).documents == (SECOND,)
    assert classify("Compare the first article with the second article", titles).documents == (FIRST, SECOND)
    assert classify("What is the fifth page about?", titles).documents == ()  # there is none: found by its topic
    assert classify("Summarize what every page says about the talks.", titles).whole_corpus


@pytest.mark.parametrize("question", [
    "How many different kinds of temporary files does SQLite use?",
    "Why did Aliyev say a peace agreement was possible?",
    "Which step of the peace process did the leaders agree on?",
    "What does the article say about the checkpoint?",
])
def test_look_alike_lookups_keep_the_fast_path(question):
    assert classify(question).kind is Kind.LOOKUP


def test_the_topic_drops_the_request_and_keeps_the_subject():
    assert topic_of("Summarize the article about the Moscow talks in three bullet points.") == "Moscow talks"
    assert topic_of("Give the gist of the page on temporary files.") == "temporary files"
    assert topic_of("What are the main points of the two articles?") == ""


def test_a_document_is_named_by_its_file_name_or_its_title():
    titles = {FIRST: "Aliyev sees real grounds for peace", SECOND: "Armenia, Azerbaijan advance"}
    assert named_documents(f"Summarize {FIRST}", titles) == (FIRST,)
    assert named_documents("summarise 000_ee4045ecc5c71559 please", titles) == (FIRST,)
    assert named_documents("What is 'Aliyev sees real grounds for peace' about?", titles) == (FIRST,)
    assert named_documents("Summarize the article about peace", titles) == ()
    pages = {"about.html": "About SQLite", "summary.txt": "Notes", "inmemorydb.html": "In-Memory Databases"}
    assert named_documents("Summarize the page about in-memory databases.", pages) == ("inmemorydb.html",)  # by its title; "about" is a word here
    assert named_documents("Give me a summary of the in-memory databases page.", pages) == ("inmemorydb.html",)
    assert named_documents("What does about.html cover?", pages) == ("about.html",)
    short = {"lang_transaction.html": "Transaction", "stricttables.html": "STRICT Tables", "wal.html": "Write-Ahead Logging"}
    assert named_documents("Explain how SQLite handles transactions.", short) == ()  # a short title is also a subject
    assert named_documents("Which version introduced STRICT tables?", short) == ()
    assert named_documents("How do I turn on write-ahead logging?", short) == ()
    assert named_documents("Summarise the STRICT Tables page.", short) == ("stricttables.html",)  # beside "page"
    assert named_documents("What does the Write-Ahead Logging cover?", short) == ("wal.html",)  # with its capitals
    assert named_documents("What are the main points of the write-ahead logging documentation?", short) == ("wal.html",)
    assert classify("Give me the main points of both articles", titles).whole_corpus


@pytest.mark.parametrize("question, sides", [
    ("What is the difference between a list and a tuple?", ("a list", "a tuple")),
    ("DELETE vs TRUNCATE journal mode: which is faster?", ("DELETE", "TRUNCATE journal mode")),
    ("How does WAL mode compare with rollback journal mode?", ("WAL mode", "rollback journal mode")),
    ("Compare the roles of the US and the EU.", ("the roles of the US", "the EU")),
    ("How does UDP differ from TCP according to these manual pages?", ("UDP", "TCP")),  # the label is what is compared
])
def test_the_two_sides_of_a_comparison(question, sides):
    assert comparison_sides(question) == sides


def test_request_words_are_not_subject_words_a_passage_must_hold():
    assert set(question_words(topic_of("Explain the background of the conflict."))) == {"conflict"}
    # without a menu that says "Documentation", no passage of the WAL page does: the page is not what to find
    assert "documentation" not in topic_of("What are the main points of the write-ahead logging documentation?").lower()


def test_each_broad_kind_gets_its_form_after_the_question_and_the_system_prompt_stays():
    lookup = build_messages("Which court?", [])
    for kind, hint in FORM_HINTS.items():
        messages = build_messages("Summarize it", [], kind)
        assert messages[0].content == lookup[0].content
        assert messages[1].content.endswith(hint)


def test_a_summary_of_a_named_document_reads_that_document_in_order(mock_engine):
    answer = ask(mock_engine, f"Summarize {FIRST} in three bullet points.")
    assert answer.kind == "summary" and not answer.refused, answer.refusal_reason
    assert {p.source for p in answer.passages} == {FIRST}
    starts = [p.start for p in answer.passages]
    assert starts == sorted(starts) and starts[0] == 0  # from its opening, in reading order
    assert all(c.supported for c in answer.sentences)


def test_a_summary_found_by_its_topic_reads_one_document(mock_engine):
    answer = ask(mock_engine, "Summarize the article about the ICJ and the Lachin Corridor checkpoint.")
    assert answer.kind == "summary" and not answer.refused, answer.refusal_reason
    assert len({p.source for p in answer.passages}) == 1 and len(answer.passages) > 3


def test_a_summary_of_something_the_corpus_lacks_is_refused(mock_engine):
    answer = ask(mock_engine, "Summarise the article about the Olympics.")
    assert answer.refused and answer.refusal_reason == "nothing relevant retrieved"


def test_a_summary_of_all_documents_reads_each_within_the_budget(mock_engine):
    answer = ask(mock_engine, "What are the main points of the two articles?")
    assert {p.source for p in answer.passages} == {FIRST, SECOND}
    budget = mock_engine.settings.retrieval.broad_context_tokens
    from rag.retrieve import count_tokens

    assert sum(count_tokens(p.text) for p in answer.passages) <= budget


def test_a_how_to_answer_sees_the_chunks_around_its_best_hit(mock_engine):
    answer = ask(mock_engine, "How do I get to Nagorno-Karabakh from Armenia by land?")
    assert answer.kind == "howto"
    by_source: dict[str, list[int]] = {}
    for p in answer.passages:
        by_source.setdefault(p.source, []).append(p.start)
    assert any(len(starts) >= 2 for starts in by_source.values())  # a hit and a neighbour


def test_a_lookup_keeps_its_passages(mock_engine):
    question = "Which court did Armenia turn to over the Lachin Corridor checkpoint?"
    answer = ask(mock_engine, question)
    expected = mock_engine.retriever.retrieve(question, widened=True)
    assert answer.kind == "lookup" and [p.node_id for p in answer.passages] == [p.node_id for p in expected.passages]


def test_a_broad_answer_gets_the_longer_output_limit_over_an_openai_compatible_server(fake_env, embedder):
    from rag.engine import build_engine
    from rag.settings import load_settings

    engine = build_engine(load_settings(), embed_model=embedder)
    ask(engine, "Who will meet in Moscow next week?")
    ask(engine, "Summarize the article about the Moscow talks.")
    settings = engine.settings
    assert fake_env.limits == [settings.llm.max_tokens, settings.answer.broad_max_tokens]
    assert engine.llm.max_tokens == settings.llm.max_tokens  # the shared LLM keeps the lookup limit


def test_a_broad_answer_gets_the_longer_output_limit_over_ollama(monkeypatch, tmp_path, corpus, embedder):
    from fake_openai import FakeOpenAI

    from rag.engine import build_engine
    from rag.settings import load_settings

    server = FakeOpenAI()
    try:
        monkeypatch.setenv("RAG_CORPUS_PATH", str(corpus))
        monkeypatch.setenv("RAG_CHROMA_PATH", str(tmp_path / "index"))
        monkeypatch.setenv("RAG_LLM_BACKEND", "ollama")
        monkeypatch.setenv("RAG_LLM_BASE_URL", server.url.removesuffix("/v1"))
        monkeypatch.setenv("RAG_LLM_MODEL", "fake")
        monkeypatch.setenv("RAG_ANSWER_SUPPORT_CHECK", "lexical")
        engine = build_engine(load_settings(), embed_model=embedder)
        ask(engine, "Who will meet in Moscow next week?")
        ask(engine, "Explain the background of the conflict.")
        assert server.limits == [engine.settings.llm.max_tokens, engine.settings.answer.broad_max_tokens]
    finally:
        server.close()


def test_eval_scores_key_points_and_reports_each_kind(mock_engine, tmp_path):
    from rag.evaluate import check_thresholds, evaluate, load_testset

    path = tmp_path / "broad.yaml"
    path.write_text(yaml.safe_dump([
        {"id": "s", "kind": "summary", "question": f"Summarize {FIRST}.", "reference_answer": "…",
         "key_points": ["Aliyev", "Olympics", "Putin|Moscow"]},
        {"id": "l", "question": "Which court did Armenia turn to over the Lachin Corridor checkpoint?", "reference_answer": "ICJ",
         "expected_keywords": ["Court|ICJ"]},
        {"id": "u", "kind": "summary", "question": "Summarise the article about the Olympics.", "reference_answer": "none",
         "answerable": False},
    ]), encoding="utf-8")
    report = evaluate(mock_engine, load_testset(path))
    cases = {c["id"]: c for c in report["cases"]}
    assert cases["s"]["key_points_missing"] == ["Olympics"] and cases["s"]["kind_found"] == "summary"
    assert cases["s"]["key_point_coverage"] == pytest.approx(0.667, abs=0.001) and cases["s"]["passed"]
    by_kind = report["summary"]["by_kind"]
    assert set(by_kind) == {"summary", "lookup"} and by_kind["summary"]["refusal_accuracy"] == 1.0
    assert report["summary"]["kind_accuracy"] == 1.0
    from rag.report import render_html

    page = render_html(report)
    assert "By kind of question" in page and "<summary>summary: 2 cases</summary>" in page and "<summary>lookup: 1 case</summary>" in page
    limits = tmp_path / "limits.toml"
    limits.write_text('[min]\n"by_kind.summary.refusal_accuracy" = 1.0\n"by_kind.lookup.correct" = 1.0\n', encoding="utf-8")
    assert check_thresholds(report["summary"], limits) == []
    limits.write_text('[min]\n"by_kind.howto.correct" = 0.5\n', encoding="utf-8")
    assert check_thresholds(report["summary"], limits) == ["by_kind.howto.correct = None is below the minimum 0.5"]


def test_a_test_case_with_an_unknown_kind_is_a_clear_error(tmp_path):
    from rag.errors import ConfigError
    from rag.evaluate import load_testset

    path = tmp_path / "bad.yaml"
    path.write_text('- {id: x, kind: poem, question: "Write a poem", reference_answer: "-"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="case x is invalid: kind"):
        load_testset(path)


def test_a_long_answer_is_a_refusal_only_when_it_opens_with_one():
    from rag.citations import opens_with_refusal

    assert not opens_with_refusal("Aliyev said peace is possible. The passages do not mention what Pashinyan said.")
    assert opens_with_refusal("The passages do not provide information about the West's role. Russia is the mediator.")


@pytest.mark.parametrize("sentence, claim", [
    ("- The article discusses the May 25 talks in Moscow.", "The May 25 talks in Moscow."),
    ("The second article states that both sides want peace.", "Both sides want peace."),
    ("- It covers the syntax for creating generated columns.", "The syntax for creating generated columns."),
    ("It is a database.", "It is a database."),
    ("- They discuss the Lachin Corridor and the Nagorno-Karabakh conflict.", "The Lachin Corridor and the Nagorno-Karabakh conflict."),
    ("They fought two wars.", "They fought two wars."),
])
def test_the_judge_reads_what_a_summary_says_a_document_states(sentence, claim):
    from rag.citations import claim_of

    assert claim_of(sentence) == claim


def test_a_lead_in_to_a_list_is_not_a_claim(mock_engine):
    from rag.citations import attribute

    passages = mock_engine.retriever.retrieve("Lachin Corridor checkpoint ICJ").passages
    text = "The articles say the following:\n- Yerevan called on the International Court of Justice (ICJ) to order Baku to remove the checkpoint."
    sentences = attribute(text, "Summarize", passages, mock_engine.embed)
    assert [s.sentence.startswith("- Yerevan") for s in sentences.sentences] == [True]


def test_what_the_documents_say_about_a_topic_reads_only_the_chunks_about_it(mock_engine):
    from rag.broad import broad_context

    question = "Summarize what the documents say about the Lachin Corridor."
    intent = classify(question, mock_engine.index.titles())
    found = broad_context(intent, question, mock_engine.retriever, 500)
    assert intent.whole_corpus and found.passages
    assert all("lachin" in p.text.lower() or "corridor" in p.text.lower() for p in found.passages)


COMPARE = "Compare what the US and the EU have done to help."


def test_a_comparison_answers_each_side_on_its_own_under_its_label(mock_engine):
    answer = ask(mock_engine, COMPARE)
    assert answer.kind == "comparison" and not answer.refused, answer.refusal_reason
    us, eu = answer.answer.split("\n\n")
    assert us.startswith("The US:\n") and eu.startswith("The EU:\n")
    assert re.search(r"\bUS\b|United States", us.split(":\n", 1)[1]) and all(c.supported for c in answer.sentences)
    assert [p.n for p in answer.passages] == list(range(1, len(answer.passages) + 1))  # one numbering for both sides


class KnowsNothingAbout(ExtractiveMockLLM):
    """The mock, refusing the parts whose question names one of `sides`."""

    sides: tuple[str, ...] = ()

    def _answer(self, prompt: str) -> str:  # type: ignore[override]
        question = prompt.rsplit("Question:", 1)[-1]
        return REFUSAL if any(f"about {side}" in question for side in self.sides) else ExtractiveMockLLM._answer(prompt)


def test_a_side_the_documents_say_nothing_about_is_left_out_and_named(make_settings, embedder):
    from rag.engine import build_engine

    llm = KnowsNothingAbout(sides=("the EU",))
    answer = ask(build_engine(make_settings(), llm=llm, embed_model=embedder), COMPARE)
    assert not answer.refused and answer.answer.startswith("The US:\n") and "The EU:" not in answer.answer
    assert "Nothing was found in the documents for “The EU”." in answer.notices


class Recording(ExtractiveMockLLM):
    """The mock, keeping every prompt it answered."""

    prompts: list = []

    def _answer(self, prompt: str) -> str:  # type: ignore[override]
        self.prompts.append(prompt)
        return ExtractiveMockLLM._answer(prompt)


def test_each_side_of_a_comparison_is_asked_in_the_side_form(make_settings, embedder):
    from rag.answer import SIDE_HINT
    from rag.engine import build_engine

    llm = Recording(prompts=[])
    answer = ask(build_engine(make_settings(), llm=llm, embed_model=embedder), COMPARE)
    assert not answer.refused and len(llm.prompts) == 2
    assert all(SIDE_HINT in prompt and FORM_HINTS[Kind.COMPARISON] not in prompt for prompt in llm.prompts)


def test_a_comparison_with_no_side_found_is_a_refusal(make_settings, embedder):
    from rag.engine import build_engine

    llm = KnowsNothingAbout(sides=("the US", "the EU"))
    answer = ask(build_engine(make_settings(), llm=llm, embed_model=embedder), COMPARE)
    assert answer.refused and answer.answer == REFUSAL


def test_a_comparison_of_the_documents_summarises_each_under_its_title(mock_engine):
    answer = ask(mock_engine, "How do the two articles differ?")
    titles = mock_engine.index.titles()
    blocks = answer.answer.split("\n\n")
    assert not answer.refused and [b.split(":\n", 1)[0] for b in blocks] == [titles[FIRST], titles[SECOND]]
    assert all(line.startswith("- ") for b in blocks for line in b.split(":\n", 1)[1].splitlines())


class EightBullets(ExtractiveMockLLM):
    """Writes the first sentence of each passage as a bullet, eight at most, and counts what was read of it."""

    read: list[str] = []

    def _answer(self, prompt: str) -> str:  # type: ignore[override]
        lines = re.findall(r"^\[\d+\]\s*(.+)$", prompt, re.MULTILINE)
        firsts = [re.split(r"(?<=[.!?])\s+", line)[0] for line in lines[:8]]
        return "\n".join(f"- {sentence}" for sentence in firsts)

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs):  # type: ignore[override]
        for response in super().stream_complete(prompt, formatted, **kwargs):
            self.read.append(response.delta)
            yield response


def test_a_summary_stops_after_five_bullets_and_stops_the_model(make_settings, embedder):
    from rag.engine import build_engine

    llm = EightBullets()
    answer = ask(build_engine(make_settings(), llm=llm, embed_model=embedder), f"Summarize {FIRST}.")
    assert len(answer.passages) >= 8 and not answer.refused, answer.refusal_reason
    assert len([line for line in answer.answer.splitlines() if line.startswith("- ")]) == 5
    assert len(llm.read) < len(re.findall(r"\S+\s*", llm._answer(_prompt_of(answer))))  # the model was not read to its end


def _prompt_of(answer) -> str:
    return "\n".join(f"[{p.n}] {p.text}" for p in answer.passages)


class MarkerApart(EightBullets):
    """Streams a list marker apart from the space after it, as the real model's tokens do ("-", " The")."""

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs):  # type: ignore[override]
        text, sent = self._answer(prompt), ""
        for token in re.findall(r"\n|-|[^\n-]+", text):
            sent += token
            yield CompletionResponse(text=sent, delta=token)


def test_a_list_cut_after_five_items_leaves_no_dangling_marker(make_settings, embedder):
    from rag.engine import build_engine

    answer = ask(build_engine(make_settings(), llm=MarkerApart(), embed_model=embedder), f"Summarize {FIRST}.")
    lines = answer.answer.splitlines()
    assert len(lines) == 5 and all(line.startswith("- ") and len(line) > 10 for line in lines), lines


class CutOff(ExtractiveMockLLM):
    """The mock's answer, then the start of a sentence its output limit cut ("length": "… solution. The Russian")."""

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs):  # type: ignore[override]
        text = ExtractiveMockLLM._answer(prompt)
        yield CompletionResponse(text=text, delta=text, raw={"choices": [{"finish_reason": None}]})
        yield CompletionResponse(text=text + " Meanwhile the", delta=" Meanwhile the", raw={"choices": [{"finish_reason": "length"}]})


def test_a_sentence_the_output_limit_cut_is_left_out_and_said(make_settings, embedder):
    from rag.engine import build_engine

    answer = ask(build_engine(make_settings(), llm=CutOff(), embed_model=embedder), "Who will meet in Moscow next week, according to Putin?")
    assert not answer.refused and "deputy prime ministers" in answer.answer.lower()
    assert "Meanwhile" not in answer.answer and answer.answer.endswith("issues [1].")
    assert "The answer reached its length limit; its unfinished last sentence is left out." in answer.notices
    assert all(c.supported for c in answer.sentences)


def test_tidy_keeps_what_was_finished():
    from rag.answer import tidy

    assert tidy("- One.\n- Two.\n-", cut_off=False) == "- One.\n- Two."
    assert tidy("- One.\n- Two is unfin", cut_off=True) == "- One."
    assert tidy("It rained. The Russian", cut_off=True) == "It rained."
    assert tidy("- No server needed\n- No setup", cut_off=False) == "- No server needed\n- No setup"  # finished: no period needed
    assert tidy("An unfinished only sentence", cut_off=True) == "An unfinished only sentence"


RAKU = """Home
Menu
About
Shop
Classes
Gallery
Download
Support
Purchase
Search
Contact
Events
Glazes
Clays
Kilns
Tools
Books
Videos
Forum
Blog
Login
Cart
Help
News
Privacy
Terms
Sitemap
Careers
Press
Donate

Firing A Raku Kiln

The usual way to fire a raku kiln is to light the propane burner at a low flame and raise it slowly over forty minutes, until the glaze on the pots melts and shines.

Raku began in sixteenth-century Kyoto, where tea masters prized the rough, irregular bowls that the quick firing produced. Western potters took the method up in the twentieth century and changed it a great deal.

The kiln itself is often a steel drum lined with ceramic fibre blanket, with a hole near the bottom for the burner and a vent in the lid. A pyrometer is useful but many potters judge the heat by eye.

When the glaze shines, turn the burner off, lift the lid and take the pots out of the kiln with long tongs, then set them in a metal bin of sawdust and close the bin so the smoke reduces the glaze.
"""
GRILL = "Use long tongs to turn the sausages on the grill, and take them out when they are brown all over.\n"


def test_a_how_to_reads_its_pages_opening_not_its_menu_and_leaves_out_a_page_far_below(make_settings, embedder, corpus):
    """The opening sentence is the method; the grill page shares "take out with long tongs" but ranks far below."""
    from rag.broad import broad_context
    from rag.engine import build_engine

    (corpus / "raku.txt").write_text(RAKU, encoding="utf-8")
    (corpus / "grill.txt").write_text(GRILL, encoding="utf-8")
    engine = build_engine(make_settings(), embed_model=embedder)
    question = "How do I take the pots out of a raku kiln with tongs?"
    assert "grill.txt" in {p.source for p in engine.retriever.retrieve(question).passages}  # plain retrieval finds it
    found = broad_context(classify(question, engine.index.titles()), question, engine.retriever, 500)
    texts = " ".join(p.text for p in found.passages)
    assert "grill.txt" not in {p.source for p in found.passages}
    assert "take the pots out of the kiln with long tongs" in texts  # the hit
    assert "The usual way to fire a raku kiln" in texts and "Purchase" not in texts  # the opening, without the menu


def test_a_summary_of_a_long_page_reads_its_sentences_not_its_menu(make_settings, embedder, corpus):
    from rag.broad import broad_context
    from rag.engine import build_engine

    (corpus / "raku.txt").write_text(RAKU, encoding="utf-8")
    engine = build_engine(make_settings(), embed_model=embedder)
    question = "Summarize raku.txt."
    found = broad_context(classify(question, engine.index.titles()), question, engine.retriever, 120)  # less than the page
    assert {p.source for p in found.passages} == {"raku.txt"}
    assert "The usual way to fire a raku kiln" in found.passages[0].text  # the first chunk that holds a sentence
    assert "Purchase" not in " ".join(p.text for p in found.passages)


WRAPPED_PAGE = "\n".join(f"Menu {i}\nPurchase {i}" for i in range(30)) + "\n\n1. Introduction\n\nSQLite strives to be flexible\nregarding the datatype of the\ncontent that it stores.\n\n" + "\n\n".join(
    f"Section {i} says that a column of type {t} in a strict table accepts only\nvalues of that type, or NULL ({i})." for i, t in
    enumerate(["INTEGER", "REAL", "TEXT", "BLOB", "ANY"] * 3))


def test_a_summary_reads_a_paragraph_its_file_wraps_in_short_lines(make_settings, embedder, corpus):
    from rag.broad import broad_context
    from rag.engine import build_engine

    (corpus / "strict.txt").write_text(WRAPPED_PAGE, encoding="utf-8")
    engine = build_engine(make_settings(), embed_model=embedder)
    question = "Summarize strict.txt."
    found = broad_context(classify(question, engine.index.titles()), question, engine.retriever, 150)
    text = " ".join(" ".join(p.text for p in found.passages).split())
    assert "SQLite strives to be flexible regarding the datatype of the content that it stores." in text
    assert "Purchase" not in text


THREADS_PAGE = """Threading modes

SQLite supports three threading modes. Single-thread. In this mode all mutexes are disabled. Multi-thread. In this mode, SQLite can be used safely by multiple threads provided that no single database connection is used simultaneously in two or more threads. Serialized. In serialized mode, API calls are serialized and SQLite can be used safely by multiple threads with no restriction.

""" + "\n\n".join(
    f"Note {i}. The difference the {mode} mode makes is chosen with a compile-time option, at start-time or per "
    f"connection; what is different in {mode} mode stays set until the next call ({i})."
    for i in range(20) for mode in ("multi-thread", "serialized"))


def test_a_comparison_reads_where_a_page_sets_the_two_side_by_side(make_settings, embedder, corpus):
    from rag.broad import broad_context
    from rag.engine import build_engine

    (corpus / "threads.txt").write_text(THREADS_PAGE, encoding="utf-8")
    engine = build_engine(make_settings(), embed_model=embedder)
    question = "What is the difference between multi-thread and serialized mode?"
    found = broad_context(classify(question, engine.index.titles()), question, engine.retriever, 400)
    assert [part.label for part in found.parts] == ["Multi-thread", "Serialized mode"]
    assert all(any("supports three threading modes" in p.text for p in part.passages) for part in found.parts)
    assert len({tuple(p.n for p in part.passages) for part in found.parts}) == 2  # and each side's own passages after it


def test_a_comparison_whose_sides_read_the_same_passages_is_answered_whole(make_settings, embedder, corpus):
    from rag.broad import broad_context
    from rag.engine import build_engine

    (corpus / "threads.txt").write_text(THREADS_PAGE, encoding="utf-8")
    engine = build_engine(make_settings(), embed_model=embedder)
    question = "What is the difference between multi-thread and serialized mode?"
    found = broad_context(classify(question, engine.index.titles()), question, engine.retriever, 160)  # room for that chunk alone
    assert found.parts == [] and any("supports three threading modes" in p.text for p in found.passages)
    whole = build_messages(question, found.passages, Kind.COMPARISON)[1].content
    assert whole.endswith(FORM_HINTS[Kind.COMPARISON]) and "one way they differ" in whole


def test_a_named_section_is_read_from_its_heading_to_the_next(mock_engine):
    from rag.broad import broad_context

    question = "Give me the key points of the Western engagement section."
    found = broad_context(classify(question, mock_engine.index.titles()), question, mock_engine.retriever, 500)
    text = " ".join(" ".join(p.text.split()) for p in found.passages)
    assert text.startswith("Western engagement The Caucasus neighbors have been seeking to negotiate a peace agreement")
    assert "hosted in Brussels by the European Council President Charles Michel" in text  # the section's second sentence
    assert "making good progress" not in text  # Pashinyan's words come before the section


GUIDE = "\n\n".join(
    ["# The Field Guide", "This guide explains how the station keeps its records and why each kind of record matters to visitors."]
    + [f"## Topic number {n}\n\n" + " ".join(f"Fact {k} of topic {n} is written here as a plain sentence about the station records."
                                            for k in range(1, 5)) for n in range(1, 16)]
)


def test_a_long_document_is_summarized_from_its_introduction_and_each_section_s_first_sentence(mock_engine, corpus):
    from rag.broad import broad_context
    from rag.corpus import read_source
    from rag.retrieve import count_tokens

    (corpus / "guide.md").write_text(GUIDE, encoding="utf-8")
    mock_engine.ingest()
    question = "Summarize guide.md."
    found = broad_context(classify(question, mock_engine.index.titles()), question, mock_engine.retriever, 500)
    texts = [" ".join(p.text.split()) for p in found.passages]
    assert "This guide explains how the station keeps its records" in texts[0]  # its introduction first
    leads = [t for t in texts if t.startswith("Topic number")]
    assert [t.split(" Fact")[0] for t in leads[:3]] == ["Topic number 1", "Topic number 2", "Topic number 3"]  # the first sections first
    assert all(t.endswith("about the station records.") for t in leads)  # whole sentences under each heading
    assert any("Topic number 14" in t or "Topic number 15" in t for t in leads)  # and sections spread over the rest
    assert sum(count_tokens(p.text) for p in found.passages) <= 500
    cleaned = read_source(corpus, "guide.md")[1].text
    assert all(cleaned[p.start:p.end].split() == p.text.split() for p in found.passages)  # offsets point into the document


def test_a_side_named_by_an_acronym_is_found_where_the_documents_spell_it_out(mock_engine):
    from rag.broad import broad_context, spelled_out

    assert spelled_out("the EU", ["with the help of the European Union and United States"]) == ["European Union"]
    assert spelled_out("ICJ", ["the International Court of Justice (ICJ)"]) == ["International Court of Justice"]
    assert spelled_out("the EU", ["nothing spelled out here"]) == []
    found = broad_context(classify(COMPARE, mock_engine.index.titles()), COMPARE, mock_engine.retriever, 500)
    eu = next(part for part in found.parts if part.label == "The EU")
    assert "European Union" in eu.question
    assert any("help of the European Union" in " ".join(p.text.split()) for p in eu.passages)


def test_how_to_windows_come_from_the_pages_that_say_most_and_their_most_similar_hits_first():
    from rag.broad import window_hits
    from rag.schema import Passage

    def hit(source: str, score: float) -> Passage:
        return Passage(n=0, node_id=f"{source}-{score}", source=source, text="t", score=score)

    # as fused for a lookup: the shell page's word match first, the backup page's best chunk last
    candidates = [hit("cli.html", 0.58), hit("backup.html", 0.53), hit("backup.html", 0.47), hit("faq.html", 0.50),
                  hit("backup.html", 0.50), hit("cli.html", 0.42), hit("backup.html", 0.59)]
    documents, hits = window_hits(candidates)
    assert documents == ["backup.html"]  # 2.09 against the shell page's 1.00: less than half
    assert [h.score for h in hits] == [0.59, 0.53, 0.50]  # its most similar first
    documents, hits = window_hits(candidates + [hit("cli.html", 0.45)])  # 1.45: a second page
    assert documents == ["backup.html", "cli.html"] and [h.score for h in hits] == [0.59, 0.58, 0.53]
    documents, hits = window_hits(candidates + [hit("faq.html", 0.70)])  # the most similar chunk's page, whatever it says besides
    assert documents == ["backup.html", "faq.html"] and [h.score for h in hits] == [0.70, 0.59, 0.53]
    assert window_hits([]) == ([], [])


def test_a_document_named_by_its_byline_is_the_one_whose_opening_holds_the_name():
    titles = {"moscow.txt": "Armenia, Azerbaijan Optimistic on Normalization at Moscow Talks", "talks.txt": "On May 25, in Moscow…",
              "wal.html": "Write-Ahead Logging", "lock.html": "File Locking"}
    openings = {"moscow.txt": "Armenia, Azerbaijan Optimistic on Normalization\nBy AFP\nMay 26, 2023",
                "talks.txt": "On May 25, in Moscow, the leaders met.\nTalks in Moscow on May 24. (Source: AP) |",
                "wal.html": "SQLite\nWrite-Ahead Logging\nThe default method by which SQLite implements atomic commit",
                "lock.html": "SQLite\nFile Locking\nSQLite version 3 locks the database file"}
    assert classify("Summarize the AFP article.", titles, openings).documents == ("moscow.txt",)
    assert classify("Give an overview of the story by AFP.", titles, openings).documents == ("moscow.txt",)
    assert classify("What does the AP story say about the talks?", titles, openings).documents == ("talks.txt",)
    assert classify("Summarize the SQLite page.", titles, openings).documents == ()  # every page opens with it: no one page
    assert classify("Summarize the Reuters article.", titles, openings).documents == ()  # no opening holds it
    assert classify("Summarize the AFP article.", titles).documents == ()  # no openings given: titles alone


def test_summarize_the_afp_article_reads_that_article_alone(mock_engine):
    from rag.broad import broad_context

    question = "Summarize the AFP article."
    intent = classify(question, mock_engine.index.titles(), mock_engine.index.openings())
    found = broad_context(intent, question, mock_engine.retriever, 500)
    assert {p.source for p in found.passages} == {"001_1f22d8ffd3c24c03.txt"}


SPECIES = ["otters", "herons", "beavers", "lynxes", "badgers", "falcons", "salmon", "newts", "voles", "ospreys", "martens",
           "plovers", "toads", "egrets", "stoats", "curlews", "adders", "grebes", "shrews", "kestrels", "weasels", "terns"]
MANUAL = "\n\n".join(
    ["# The Reserve Manual", "This manual tells the wardens of the reserve how its animals are counted and looked after."]
    + [f"## Caring for the {name}\n\nThe {name} of the reserve are counted every spring by two wardens walking the same route. "
       + " ".join(f"Rule {k} for the {name} is kept in the warden's notebook with the date it was checked." for k in range(1, 4))
       for name in SPECIES[:11]]
    + ["## New features in version 2\n\nThese sections list what version 2 of the manual added.",
       "## Solar lamps\n\nSolar lamps now stand along the night trail, and wardens switch them off in the nesting months.",
       "## Night tours\n\nNight tours for visitors are now led by one warden with a red torch, twice a week."]
    + [f"## Caring for the {name}\n\nThe {name} of the reserve are counted every autumn from the hides by one warden. "
       + " ".join(f"Rule {k} for the {name} is kept in the warden's notebook with the date it was checked." for k in range(1, 4))
       for name in SPECIES[11:]]
)


def test_a_named_long_document_is_read_at_the_section_its_topic_finds_and_through_the_sections_it_introduces(mock_engine, corpus):
    from rag.broad import broad_context

    (corpus / "manual.md").write_text(MANUAL, encoding="utf-8")
    mock_engine.ingest()
    question = "Give an overview of the new features in version 2 of manual.md."
    found = broad_context(classify(question, mock_engine.index.titles()), question, mock_engine.retriever, 200)
    texts = [" ".join(p.text.split()) for p in found.passages]
    assert texts[0].startswith("New features in version 2 These sections list what version 2 of the manual added."), texts
    assert any("Solar lamps now stand along the night trail" in t for t in texts) and any("Night tours for visitors" in t for t in texts)
    assert not any("This manual tells the wardens" in t for t in texts)  # not the manual's opening
    whole = "Give an overview of manual.md."  # no topic of its own: the manual, by its outline
    assert " ".join(broad_context(classify(whole, mock_engine.index.titles()), whole, mock_engine.retriever, 200).passages[0].text.split()) \
        .startswith("The Reserve Manual This manual tells the wardens")
