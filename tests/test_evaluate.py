"""The evaluation: test-set format, metrics, reports, CLI and the app's Evaluation page."""

import json
from pathlib import Path

import pytest

from rag.cli import main
from rag.errors import ConfigError
from rag.evaluate import Case, check_thresholds, keyword_found, load_testset, score, summarize
from rag.schema import Answer, Backend, Citation, RetrievedRef, Timings

ROOT = Path(__file__).resolve().parent.parent


def test_project_testset_is_valid_and_broad():
    cases = load_testset(ROOT / "eval" / "testset.yaml")
    assert len(cases) >= 40
    assert sum(not c.answerable for c in cases) >= 8
    assert sum(bool(c.history) for c in cases) >= 4
    sources = {s for c in cases for s in c.expected_sources}
    assert sources == {"000_ee4045ecc5c71559.txt", "001_1f22d8ffd3c24c03.txt"}


def test_jsonl_and_bad_files(tmp_path):
    good = tmp_path / "t.jsonl"
    good.write_text('{"id": "a", "question": "Q?", "reference_answer": "A", "answerable": false}\n\n')
    [case] = load_testset(good)
    assert not case.answerable and case.expected_keywords == [] and case.history == []
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"id": "a"\n')
    with pytest.raises(ConfigError, match="b.jsonl:1: not valid JSON"):
        load_testset(bad)
    missing = tmp_path / "m.yaml"
    missing.write_text("- id: x\n  question: Q?\n")
    with pytest.raises(ConfigError, match="case x is invalid: reference_answer"):
        load_testset(missing)
    dup = tmp_path / "d.yaml"
    dup.write_text("- {id: x, question: Q, reference_answer: A}\n- {id: x, question: Q, reference_answer: A}\n")
    with pytest.raises(ConfigError, match="duplicate case ids: x"):
        load_testset(dup)


def test_keywords_with_alternatives():
    assert keyword_found("The US made proposals", "US|United States")
    assert keyword_found("the united states made", "US|United States")
    assert not keyword_found("Russia did", "US|United States")


def _answer(text, refused=False, sources=("a.txt",), cited=(("a.txt", True),)):
    return Answer(
        question="q", answer=text, refused=refused, backend=Backend(llm="x", embedding="y"),
        retrieved=[RetrievedRef(source=s, score=0.5, text="t") for s in sources],
        citations=[Citation(n=1, source=s, text="t", quote="t", score=0.9, verified=v) for s, v in cited],
        timings=Timings(total_s=2.0, first_token_s=1.0),
    )


def test_metrics_follow_their_definitions():
    answerable = Case(id="a", question="q", reference_answer="r", expected_keywords=["1991"], expected_sources=["b.txt"])
    unanswerable = Case(id="u", question="q", reference_answer="r", answerable=False)
    results = [
        score(answerable, _answer("In 1991.", sources=("a.txt", "b.txt"), cited=(("b.txt", True), ("a.txt", False))), 0.8),
        score(answerable, _answer("No idea", refused=True, sources=("a.txt",), cited=()), 0.2),
        score(unanswerable, _answer("I couldn't find this", refused=True, cited=()), 0.6),
        score(unanswerable, _answer("Made up", cited=(("a.txt", True),)), 0.1),
    ]
    s = summarize(results)
    assert s["n"] == 4 and s["correct"] == 0.5 and s["false_refusals"] == 0.5
    assert s["refusal_accuracy"] == 0.5
    assert s["hit_rate"] == 0.5 and s["mrr"] == 0.25  # rank 2 in the first case, absent in the second
    assert s["citation_validity"] == 0.6667  # 2 of 3 citations verified
    assert s["source_precision"] == 0.5  # of the answerable cases' cited sources {b, a}, b expected
    assert s["semantic_similarity"] == 0.425
    assert s["latency_p50_s"] == 2.0 and s["ttft_p50_s"] == 1.0


def test_thresholds_gate(tmp_path):
    limits = tmp_path / "t.toml"
    limits.write_text("[min]\ncorrect = 0.7\n[max]\nlatency_p50_s = 5\n")
    assert check_thresholds({"correct": 0.8, "latency_p50_s": 4}, limits) == []
    failures = check_thresholds({"correct": 0.6, "latency_p50_s": 6}, limits)
    assert failures == ["correct = 0.6 is below the minimum 0.7", "latency_p50_s = 6 is above the maximum 5"]


def test_latency_limits_stretch_on_a_slower_machine_only_as_far_as_it_is_slower(tmp_path):
    limits = tmp_path / "t.toml"
    limits.write_text("[max]\nttft_p50_s = 4\nwrong_but_verified = 2\n[reference]\nprefill_tok_s = 120\n")
    assert check_thresholds({"ttft_p50_s": 7.9, "wrong_but_verified": 2, "prefill_tok_s": 60}, limits) == []  # 2x slower: 8 s
    assert check_thresholds({"ttft_p50_s": 8.1, "wrong_but_verified": 3, "prefill_tok_s": 60}, limits) == [
        "ttft_p50_s = 8.1 is above the maximum 8.0 (x2.00: this machine prefills 60 tokens/s)",
        "wrong_but_verified = 3 is above the maximum 2"]  # counts never stretch
    assert check_thresholds({"ttft_p50_s": 4.1, "prefill_tok_s": 240}, limits)  # a faster machine keeps the limit
    assert check_thresholds({"ttft_p50_s": 17, "prefill_tok_s": 10}, limits)  # 12x slower: at most x4 (16 s)
    assert check_thresholds({"ttft_p50_s": 4.1, "prefill_tok_s": None}, limits)  # another backend: as written


def test_rag_eval_writes_json_and_html(mock_env, monkeypatch, tmp_path, corpus, capsys):
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    code = main(["eval", "--testset", str(ROOT / "eval" / "testset.yaml"), "--limit", "6",
                 "--json-out", str(out_json), "--html-out", str(out_html)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Correct" in printed and "Hit rate" in printed
    report = json.loads(out_json.read_text())
    for key in ("n", "correct", "refusal_accuracy", "false_refusals", "hit_rate", "mrr", "citation_validity",
                "source_precision", "semantic_similarity", "latency_p50_s", "latency_p95_s", "ttft_p50_s"):
        assert key in report["summary"]
    assert report["summary"]["n"] == 6 and len(report["cases"]) == 6
    case = report["cases"][0]
    assert {"question", "answer", "refused", "citations", "retrieved_sources", "correct", "latency_s"} <= set(case)
    page = out_html.read_text()
    assert page.count("<img alt=") == 2 and "data:image/png;base64," in page and "<script" not in page


def test_eval_gate_fails_on_thresholds(mock_env, monkeypatch, tmp_path, corpus, capsys):
    limits = tmp_path / "limits.toml"
    limits.write_text("[min]\ncorrect = 1.01\n")
    monkeypatch.setenv("RAG_EVAL_THRESHOLDS", str(limits))
    assert main(["eval", "--testset", str(ROOT / "eval" / "testset.yaml"), "--limit", "2", "--gate"]) == 1
    assert "GATE FAILED: correct" in capsys.readouterr().err


def test_evaluation_page_runs_a_testset(mock_env, monkeypatch, tmp_path, corpus):
    from streamlit.testing.v1 import AppTest

    from rag.ui import clear_caches

    monkeypatch.setenv("RAG_EVAL_TESTSET", str(ROOT / "eval" / "testset.yaml"))
    clear_caches()
    at = AppTest.from_file(str(ROOT / "pages" / "1_Evaluation.py"), default_timeout=300)
    at.run()
    at.number_input[0].set_value(5)
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert [m.label for m in at.metric][:2] == ["Correct", "Refusal accuracy"]
