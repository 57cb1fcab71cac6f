"""Sentence support states: ✅ only where the check found the quote states the sentence.

The judge is the LLM's P(yes) (a fake judge or the fake OpenAI server's log-probabilities
here; the real model in test_llm.py); backends without log-probabilities get the lexical
check, and every answer and `rag doctor` say which one it got.
"""

import re

import pytest
import yaml

from rag.answer import ask
from rag.backends import ExtractiveMockLLM
from rag.cli import main
from rag.engine import build_engine
from rag.evaluate import Case, score, verifier_metrics
from rag.schema import Turn
from rag.verify import load_pairs, word_coverage

MEET = "Who will meet in Moscow next week, according to Putin?"
# Shares the quote's words and names, but adds a fact the passages do not state: only a judge that reads meaning catches it.
SECOND = " The deputy prime ministers of Russia, Azerbaijan and Armenia will sign a peace treaty next week."


class TwoSentences(ExtractiveMockLLM):
    """The mock's extractive answer, plus a sentence that adds a treaty to it."""

    @staticmethod
    def _answer(prompt: str) -> str:
        first = ExtractiveMockLLM._answer(prompt)
        return first if "Follow Up Input:" in prompt else first + SECOND


def judge_doubting(*words: str):
    """A fake entailment judge: P(yes) 0.1 for a sentence holding one of `words`, 0.95 otherwise."""
    calls = []

    def judge(messages) -> float:
        sentence = messages[-1].content.rsplit("Statement:", 1)[-1].split("\n")[0].lower()
        calls.append(sentence)
        return 0.1 if any(w in sentence for w in words) else 0.95

    judge.calls = calls
    return judge


def engine_with(make_settings, embedder, judge, llm=None):
    return build_engine(make_settings(), llm=llm or ExtractiveMockLLM(), embed_model=embedder, judge=judge)


def test_supported_sentences_are_checked_and_shown_green(make_settings, embedder):
    judge = judge_doubting()
    answer = ask(engine_with(make_settings, embedder, judge), MEET)
    assert not answer.refused and answer.support_check.startswith("entailment")
    [check] = answer.sentences
    assert check.supported and check.support == 0.95 and check.quotes and check.citations == [answer.citations[0].n]
    assert all(c.verified for c in answer.citations)
    assert judge.calls and answer.timings.verify_s >= 0


def test_a_sentence_its_quote_does_not_state_is_shown_with_a_warning_never_green(make_settings, embedder):
    answer = ask(engine_with(make_settings, embedder, judge_doubting("treaty"), TwoSentences()), MEET)
    assert not answer.refused
    meeting, treaty = answer.sentences
    assert meeting.supported and not treaty.supported and "do not state" in treaty.reason
    assert not any(c.verified for c in answer.citations if c.sentence == treaty.text)
    assert all(c.verified for c in answer.citations if c.sentence == meeting.text)


def test_an_answer_with_no_supported_sentence_is_refused_with_the_reason(make_settings, embedder):
    answer = ask(engine_with(make_settings, embedder, judge_doubting("")), MEET)
    assert answer.refused and "do not state" in answer.refusal_reason and "0.10" in answer.refusal_reason
    assert answer.draft and answer.sentences and not answer.sentences[0].supported


def test_the_lexical_check_is_named_when_there_is_no_judge(mock_engine):
    answer = ask(mock_engine, MEET)
    assert not answer.refused and answer.support_check.startswith("lexical")
    assert answer.sentences[0].supported and answer.sentences[0].support is None


def test_words_the_standalone_question_supplies_need_no_quote():
    quote = ["They will meet next week to resolve a number of outstanding issues."]
    sentence = "The deputy prime ministers will meet next week in Moscow."
    assert word_coverage(sentence, quote, "Who will meet in Moscow next week?") > word_coverage(sentence, quote, "Who will meet?")
    assert word_coverage(sentence, quote, "Who are the deputy prime ministers meeting in Moscow?") == 1.0


def test_an_openai_compatible_server_judges_with_its_log_probabilities(fake_env, embedder):
    from rag.settings import load_settings

    engine = build_engine(load_settings(), embed_model=embedder)
    answer = ask(engine, MEET)
    assert not answer.refused and answer.support_check.startswith("entailment")
    assert answer.sentences[0].support == pytest.approx(0.87, abs=0.01) and fake_env.judged == 1
    fake_env.doubted = {"deputy"}
    refused = ask(engine, MEET)
    assert refused.refused and "do not state" in refused.refusal_reason


def test_a_server_without_log_probabilities_falls_back_to_the_lexical_check_and_says_so(fake_env, embedder, capsys):
    from rag.settings import load_settings

    fake_env.logprobs = False
    engine = build_engine(load_settings(), embed_model=embedder)
    answer = ask(engine, MEET)
    assert not answer.refused and answer.citations[0].verified
    assert answer.support_check.startswith("lexical") and "no log-probabilities" in answer.support_check
    judged = fake_env.judged
    ask(engine, MEET)
    assert fake_env.judged == judged  # asked once, not on every answer
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "citation check: lexical" in out and "no log-probabilities" in out


def test_the_cli_marks_each_sentence(fake_env, capsys):
    fake_env.answer = ["Deputy prime ministers of Russia, Azerbaijan and Armenia will meet next week.", SECOND]
    fake_env.doubted = {"treaty"}
    assert main(["ask", MEET]) == 0
    out = capsys.readouterr().out
    assert "✅ supported: Deputy prime ministers" in out
    assert "⚠️ NOT supported" in out and "peace treaty" in out.split("⚠️ NOT supported")[1]
    assert "check: entailment" in out


def test_the_app_warns_on_an_unsupported_sentence(fake_env):
    from test_app import _ask, _start, plain

    fake_env.answer = ["Deputy prime ministers of Russia, Azerbaijan and Armenia will meet next week.", SECOND]
    fake_env.doubted = {"treaty"}
    at = _ask(_start(), MEET)
    [warning] = [w for w in at.warning if "Not supported" in w.value]
    assert "peace treaty" in plain(warning.value) and "Deputy" not in plain(warning.value)
    assert any("1 of 2 sentences" in plain(c.value) and "entailment" in c.value for c in at.caption)


def test_eval_counts_wrong_answers_shown_all_green_and_scores_the_verifier(make_settings, embedder, tmp_path):
    engine = engine_with(make_settings, embedder, judge_doubting("treaty"))
    answer = ask(engine, MEET)
    wrong = Case(id="w", question=MEET, reference_answer="x", expected_keywords=["Lavrov"])  # all ✅, yet wrong
    assert score(wrong, answer, None).wrong_but_verified
    right = Case(id="r", question=MEET, reference_answer="x", expected_keywords=["deputy prime minister"])
    assert not score(right, answer, None).wrong_but_verified
    pairs = tmp_path / "pairs.yaml"
    rows = [{"question": "q", "sentence": s, "quote": s, "supported": ok}
            for s, ok in [("Meeting next week.", True), ("A treaty and a meeting.", True), ("A peace treaty.", False)]]
    pairs.write_text(yaml.safe_dump(rows), encoding="utf-8")
    metrics = verifier_metrics(engine, load_pairs(pairs))
    assert metrics["verifier_precision"] == 1.0 and metrics["verifier_recall"] == 0.5
    assert [m["sentence"] for m in metrics["verifier_misjudged"]] == ["A treaty and a meeting."]


def test_the_html_report_shows_each_sentence_state_with_its_quote(make_settings, embedder):
    from rag.evaluate import run_cases
    from rag.report import render_html

    engine = engine_with(make_settings, embedder, judge_doubting("treaty"), TwoSentences())
    case = Case(id="meet", question=MEET, reference_answer="x", expected_keywords=["Lavrov"])
    page = render_html(run_cases([case], lambda c: ask(engine, c.question), engine.embed))
    assert "✅ The Russian leader" in page and "⚠️ The deputy prime ministers" in page and "support 0.95" in page
    assert "the quotes do not state it" in page and "deputy prime ministers of Russia" in page.split("⚠️")[1]


class SaysNo(ExtractiveMockLLM):
    """Answers as a small model answers a yes/no question: "No, " and then the fact."""

    @staticmethod
    def _answer(prompt: str) -> str:
        first = ExtractiveMockLLM._answer(prompt)
        return first if "Follow Up Input:" in prompt else "No, " + first[0].lower() + first[1:]


def test_a_yes_no_answer_is_judged_on_its_fact_and_shown_with_its_no(make_settings, embedder):
    judge = judge_doubting()
    answer = ask(engine_with(make_settings, embedder, judge, SaysNo()), MEET)
    assert not answer.refused and answer.answer.startswith("No, ")
    assert answer.sentences[0].supported and answer.sentences[0].text.startswith("No, ")
    assert judge.calls and not judge.calls[0].startswith("no")  # the judge read the statement, not the reply word


class ParaphrasedSummary(ExtractiveMockLLM):
    """A summary whose second bullet is a terse paraphrase of one document sentence, as the 1.5B model writes them."""

    @staticmethod
    def _answer(prompt: str) -> str:
        return ("- Aliyev said there are real grounds for normalizing relations with Armenia.\n"
                "- Armenia and Azerbaijan: three decades at odds, two conflicts.\n"
                "- Deputy prime ministers of Russia, Azerbaijan and Armenia will meet next week.")


def test_a_summary_bullet_its_quote_does_not_state_is_shown_in_the_documents_words(make_settings, embedder):
    summary = ParaphrasedSummary()
    answer = ask(engine_with(make_settings, embedder, judge_doubting("decades at odds"), summary), "Summarize 000_ee4045ecc5c71559.txt.")
    assert not answer.refused and answer.kind == "summary"
    lines = answer.answer.splitlines()
    assert lines[1].startswith("- “Armenia and Azerbaijan have been at odds with each other for the past three decades")
    assert re.search(r"” \[\d+\]$", lines[1]) and lines[0].startswith("- Aliyev said") and lines[2].startswith("- Deputy")
    assert all(c.supported for c in answer.sentences)
    quoted = [c for c in answer.sentences if c.quoted_for]
    assert [c.quoted_for for c in quoted] == ["- Armenia and Azerbaijan: three decades at odds, two conflicts."]
    assert quoted[0].text == lines[1].rsplit(" [", 1)[0] and quoted[0].support is None
    assert all(c.verified for c in answer.citations)  # the quote is located in the file, and now states its sentence
    assert "1 of 3 sentences are the documents' own words" in " ".join(answer.notices)
    assert answer.draft == summary._answer("")  # what the model wrote stays readable


def test_a_bullet_no_passage_sentence_matches_keeps_its_warning(make_settings, embedder):
    class Invented(ParaphrasedSummary):
        @staticmethod
        def _answer(prompt: str) -> str:
            return ParaphrasedSummary._answer(prompt) + "\n- Zebras migrate across the Serengeti every autumn."

    answer = ask(engine_with(make_settings, embedder, judge_doubting("decades at odds"), Invented()), "Summarize 000_ee4045ecc5c71559.txt.")
    zebra = next(c for c in answer.sentences if "Zebras" in c.text)
    assert not zebra.supported and zebra.quoted_for is None and "Zebras migrate" in answer.answer


def test_eval_counts_the_sentences_put_in_the_documents_words(make_settings, embedder, tmp_path):
    from rag.evaluate import evaluate, load_testset
    from rag.report import render_html

    path = tmp_path / "broad.yaml"
    path.write_text(yaml.safe_dump([{"id": "s", "kind": "summary", "question": "Summarize 000_ee4045ecc5c71559.txt.",
                                     "reference_answer": "…", "key_points": ["Aliyev", "decades", "deputy prime ministers"]}]))
    engine = engine_with(make_settings, embedder, judge_doubting("decades at odds"), ParaphrasedSummary())
    report = evaluate(engine, load_testset(path))
    assert report["summary"]["sentences_quoted"] == pytest.approx(1 / 3, abs=0.001)
    assert report["summary"]["by_kind"]["summary"]["sentences_quoted"] == pytest.approx(1 / 3, abs=0.001)
    assert report["cases"][0]["correct"] and report["cases"][0]["all_supported"]
    assert report["summary"]["correct_and_supported"] == 1.0  # the broad target: its key points, every sentence ✅
    assert "quoted for the draft's “- Armenia and Azerbaijan: three decades at odds" in render_html(report)


class RepeatedSummary(ExtractiveMockLLM):
    """The paraphrased summary with its terse bullet written twice, as the 1.5B model sometimes does."""

    @staticmethod
    def _answer(prompt: str) -> str:
        return ParaphrasedSummary._answer(prompt) + "\n- Armenia and Azerbaijan: three decades at odds, two conflicts."


def test_a_bullet_the_model_wrote_twice_is_left_out_said_and_counted(make_settings, embedder, tmp_path):
    from rag.evaluate import evaluate, load_testset
    from rag.report import render_html

    engine = engine_with(make_settings, embedder, judge_doubting("decades at odds"), RepeatedSummary())
    answer = ask(engine, "Summarize 000_ee4045ecc5c71559.txt.")
    assert answer.answer.count("three decades") == 1 and len(answer.answer.splitlines()) == 3
    assert answer.left_out == ["- Armenia and Azerbaijan: three decades at odds, two conflicts."]
    assert any(n.startswith("Left out, as the quoted passages already give that point") for n in answer.notices)
    path = tmp_path / "broad.yaml"
    path.write_text(yaml.safe_dump([{"id": "s", "kind": "summary", "question": "Summarize 000_ee4045ecc5c71559.txt.",
                                     "reference_answer": "…", "key_points": ["Aliyev", "decades"]}]))
    report = evaluate(engine, load_testset(path))
    assert report["summary"]["sentences_left_out"] == 0.25 and report["summary"]["by_kind"]["summary"]["sentences_left_out"] == 0.25
    assert "<s>- Armenia and Azerbaijan: three decades at odds, two conflicts.</s>" in render_html(report)


def test_a_sentence_whose_quote_another_sentence_shows_is_left_out_not_shown_twice():
    from rag.citations import PassageSentence, SentenceSupport, quote_in_place
    from rag.schema import Passage, SentenceCheck

    text = "Write-Ahead Log (WAL) Files The default method is a rollback journal. WAL appends changes to a separate file."
    passage = Passage(n=1, node_id="a", source="wal.html", text=text, score=0.9)
    heading_led, alone = PassageSentence(passage, 0, 70), PassageSentence(passage, 28, 70)
    answer = "WAL is the default journal. The default is WAL mode."
    sentences = [SentenceSupport("WAL is the default journal.", (0, 27), [(heading_led, 0.8)]),
                 SentenceSupport("The default is WAL mode.", (28, 52), [(alone, 0.8)])]
    checks = [SentenceCheck(text=s.sentence, supported=False, reason="the quotes do not state it") for s in sentences]
    shown, left_out = quote_in_place(answer, sentences, checks)
    assert shown == "“Write-Ahead Log (WAL) Files The default method is a rollback journal.”"  # the wrong gloss is gone
    assert left_out == ["The default is WAL mode."]
    assert [c.text for c in checks] == [shown] and checks[0].supported and len(sentences) == 1


def test_a_bullet_written_twice_is_shown_once_and_a_step_it_repeats_goes_with_its_line():
    from rag.citations import PassageSentence, SentenceSupport, quote_in_place
    from rag.schema import Passage, SentenceCheck

    text = "The backup API copies a live database. It can copy an in-memory database to disk."
    passage = Passage(n=1, node_id="a", source="backup.html", text=text, score=0.9)
    first, second = PassageSentence(passage, 0, 38), PassageSentence(passage, 39, len(text))
    answer = "- The backup API copies a live database.\n- It copies data to in-memory databases.\n- It copies data to in-memory databases.\n"
    lines = answer.splitlines(keepends=True)
    spans = [(sum(map(len, lines[:i])), sum(map(len, lines[:i])) + len(lines[i]) - 1) for i in range(3)]
    sentences = [SentenceSupport(answer[s:e], (s, e), [(ps, 0.8)]) for (s, e), ps in zip(spans, [first, second, second])]
    checks = [SentenceCheck(text=sentences[0].sentence, supported=True)] + [
        SentenceCheck(text=s.sentence, supported=False, reason="the quotes do not state it") for s in sentences[1:]]
    shown, left_out = quote_in_place(answer, sentences, checks)
    assert shown == "- The backup API copies a live database.\n- “It can copy an in-memory database to disk.”\n"
    assert left_out == ["- It copies data to in-memory databases."] and len(checks) == len(sentences) == 2
    assert [shown[slice(*s.span)] for s in sentences] == [c.text for c in checks]


def test_a_supported_bullet_written_twice_is_shown_once_without_a_notice():
    from rag.citations import PassageSentence, SentenceSupport, quote_in_place
    from rag.schema import Passage, SentenceCheck

    text = "WAL is faster in most scenarios. WAL uses a separate file."
    passage = Passage(n=1, node_id="a", source="wal.html", text=text, score=0.9)
    answer = "- WAL is faster in most scenarios.\n- WAL uses a separate file.\n2. wal is faster in most scenarios\n"
    spans = [(0, 34), (35, 62), (63, 97)]
    quotes = [PassageSentence(passage, 0, 32), PassageSentence(passage, 33, len(text)), PassageSentence(passage, 0, 32)]
    sentences = [SentenceSupport(answer[s:e], (s, e), [(ps, 0.9)]) for (s, e), ps in zip(spans, quotes)]
    checks = [SentenceCheck(text=s.sentence, supported=True) for s in sentences]
    shown, left_out = quote_in_place(answer, sentences, checks)
    assert shown == "- WAL is faster in most scenarios.\n- WAL uses a separate file.\n"  # the reader has it once
    assert left_out == [] and [c.text for c in checks] == ["- WAL is faster in most scenarios.", "- WAL uses a separate file."]


class RepeatedSteps(ExtractiveMockLLM):
    """The paraphrased summary as numbered steps, its terse step written twice (the second in the middle)."""

    @staticmethod
    def _answer(prompt: str) -> str:
        lines = ParaphrasedSummary._answer(prompt).replace("- ", "").splitlines()
        return "\n".join(f"{n}. {line}" for n, line in enumerate([lines[0], lines[1], lines[1], lines[2]], start=1))


def test_a_step_left_out_leaves_no_gap_in_the_numbering(make_settings, embedder):
    engine = engine_with(make_settings, embedder, judge_doubting("decades at odds"), RepeatedSteps())
    answer = ask(engine, "Summarize 000_ee4045ecc5c71559.txt.")
    assert answer.left_out == ["Armenia and Azerbaijan: three decades at odds, two conflicts."]
    assert [line.split(" ", 1)[0] for line in answer.answer.splitlines()] == ["1.", "2.", "3."]



def test_a_code_line_the_passages_hold_is_shown_green_without_asking_the_judge(embed):
    from rag.citations import attribute
    from rag.schema import Passage
    from rag.verify import check_sentences

    text = "Foreign key constraints are disabled by default.\nsqlite> PRAGMA foreign_keys = ON;"
    passage = Passage(n=1, node_id="fk::1", source="foreignkeys.html", text=text, score=0.8, start=0, end=len(text))
    answer = "1. Switch enforcement on for the connection:\n```sql\nPRAGMA foreign_keys = ON;\n```"
    judge = judge_doubting("")  # doubts every statement it is asked about
    checks = check_sentences(attribute(answer, "How do I enforce foreign keys?", [passage], embed).sentences,
                             "How do I enforce foreign keys?", judge, 0.7, "system")
    code = next(c for c in checks if c.text.startswith("PRAGMA"))
    assert code.supported and code.support == 1.0 and code.citations == [1]
    assert not any("pragma" in call for call in judge.calls) and not any("```" in c.text for c in checks)
