"""Feedback: stored with what a replay needs, safe with two writers, exported as test cases that `rag eval` runs."""

from __future__ import annotations

import json
import sqlite3
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from rag.answer import ask
from rag.cli import main
from rag.evaluate import evaluate, load_testset
from rag.feedback import EXPORT_HEADER, Feedback, FeedbackStore, Problem, Record, give, text_hash

MEET = "Who will meet in Moscow next week, according to Putin?"
OLYMPICS = "Who won the 2024 Olympic marathon?"
SEED = "000_ee4045ecc5c71559.txt"


def test_feedback_keeps_everything_a_replay_needs(mock_engine):
    answer = ask(mock_engine, MEET)
    fb = Feedback(rating=-1, problem=Problem.WRONG_ANSWER, correction="The deputy prime ministers.", sources=[SEED])
    history = []
    record_id = give(mock_engine.settings, answer, fb, history, conversation_id="c1")
    [record] = FeedbackStore(mock_engine.settings.chroma.path).records()
    assert record.id == record_id and record.conversation_id == "c1" and record.feedback == fb
    assert record.question == MEET and record.answer.citations == answer.citations and record.answer.sentences == answer.sentences
    assert [c["node_id"] for c in record.chunks] == [p.node_id for p in answer.passages]
    assert record.chunks[0]["text_hash"] == text_hash(answer.passages[0].text)
    hashes = mock_engine.index.source_hashes()
    assert set(record.source_hashes) == {p.source for p in answer.passages} | {SEED}
    assert all(record.source_hashes[s] == hashes[s] for s in record.source_hashes)
    assert record.settings["retrieval"]["top_k"] == mock_engine.settings.retrieval.top_k and len(record.settings_hash) == 16
    assert record.answer.backend.llm == "mock" and record.corpus_fingerprint


def _add_many(path: str, record_json: str, n: int) -> list[int]:
    store = FeedbackStore(Path(path))
    return [store.add(Record.model_validate_json(record_json)) for _ in range(n)]


def test_two_tabs_giving_feedback_at_once_lose_nothing(mock_engine):
    answer = ask(mock_engine, MEET)
    give(mock_engine.settings, answer, Feedback(rating=1))  # the store exists, as when a tab is open
    record_json = FeedbackStore(mock_engine.settings.chroma.path).records()[0].model_dump_json(exclude={"id"})
    folder = str(mock_engine.settings.chroma.path)
    with ProcessPoolExecutor(max_workers=2) as pool:
        ids = [i for got in pool.map(_add_many, [folder, folder], [record_json] * 2, [60, 60]) for i in got]
    records = FeedbackStore(mock_engine.settings.chroma.path).records()
    assert len(records) == 121 and len(set(ids)) == 120
    with sqlite3.connect(mock_engine.settings.chroma.path / "rag.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def _cli(settings, *args: str) -> int:
    return main(["feedback", *args, "--corpus", str(settings.corpus.path), "--index", str(settings.chroma.path)])


def test_feedback_becomes_a_test_set_that_eval_runs(mock_engine, tmp_path, capsys):
    settings = mock_engine.settings
    good = ask(mock_engine, MEET)
    give(settings, good, Feedback(rating=1))
    give(settings, ask(mock_engine, OLYMPICS), Feedback(rating=-1, problem=Problem.SHOULD_REFUSE))
    give(settings, good, Feedback(rating=-1, problem=Problem.OTHER, comment="too short"))
    out = tmp_path / "eval" / "feedback.yaml"
    assert _cli(settings, "list") == 0
    listing = capsys.readouterr().out
    assert "👍 Who will meet in Moscow" in listing and "no case: a 👎 without the correct answer" in listing
    assert _cli(settings, "export", "--to", str(out)) == 0
    assert "#3 skipped: a 👎 without the correct answer" in capsys.readouterr().out
    assert out.read_text(encoding="utf-8").startswith(EXPORT_HEADER)
    first, second = load_testset(out)
    assert (first.id, first.answerable, second.answerable) == ("feedback-1", True, False)
    assert "Azerbaijan" in first.expected_keywords and not {"Moscow", "Putin"} & set(first.expected_keywords)  # the answer's facts
    assert set(first.expected_sources) == {c.source for c in good.citations}
    report = evaluate(mock_engine, [first, second])
    rows = {r["id"]: r for r in report["cases"]}
    assert rows["feedback-1"]["passed"] and rows["feedback-2"]["answerable"] is False
    assert report["summary"]["stale_cases"] == 0


def test_a_case_goes_stale_when_its_document_changes(mock_engine, tmp_path, capsys):
    settings = mock_engine.settings
    answer = ask(mock_engine, MEET)
    give(settings, answer, Feedback(rating=1))
    source = answer.citations[0].source
    doc = settings.corpus.path / source
    doc.write_text(doc.read_text(encoding="utf-8") + "\nA sentence added later.\n", encoding="utf-8")
    mock_engine.ingest()
    out = tmp_path / "feedback.yaml"
    assert _cli(settings, "export", "--to", str(out)) == 0
    assert _cli(settings, "list") == 0
    assert f"stale: {source} changed" in capsys.readouterr().out
    report = evaluate(mock_engine, load_testset(out))
    assert report["cases"][0]["stale"] == [source] and report["summary"]["stale_cases"] == 1


def test_export_never_overwrites_a_hand_written_test_set(mock_engine, tmp_path, capsys):
    give(mock_engine.settings, ask(mock_engine, MEET), Feedback(rating=1))
    mine = tmp_path / "testset.yaml"
    mine.write_text("- {id: a, question: q, reference_answer: r}\n", encoding="utf-8")
    assert _cli(mock_engine.settings, "export", "--to", str(mine)) == 2
    assert "was not written by `rag feedback export`" in capsys.readouterr().err
    assert mine.read_text(encoding="utf-8") == "- {id: a, question: q, reference_answer: r}\n"


def test_bad_feedback_is_a_clear_error():
    with pytest.raises(ValueError, match="rating"):
        Feedback(rating=5)
    assert json.loads(Feedback(rating=1).model_dump_json())["problem"] is None
    with pytest.raises(ValueError):
        Feedback(rating=-1, problem="broken")


def test_the_evaluation_page_shows_the_feedback_and_runs_its_cases(mock_env, make_settings, embedder):
    from streamlit.testing.v1 import AppTest

    from rag.engine import build_engine
    from rag.ui import clear_caches

    engine = build_engine(make_settings(), embed_model=embedder)  # the same folders as the app's (mock_env)
    give(engine.settings, ask(engine, MEET), Feedback(rating=1))
    give(engine.settings, ask(engine, OLYMPICS), Feedback(rating=-1, problem=Problem.OTHER))
    clear_caches()
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "pages" / "1_Evaluation.py"), default_timeout=300)
    at.run()
    assert not at.exception and not at.error
    rows = at.dataframe[0].value
    assert list(rows["#"]) == [2, 1] and list(rows["rating"]) == ["👎", "👍"]
    assert "no case: a 👎 without the correct answer" in rows["notes"][0] and rows["question"][1] == MEET
    assert "Download as a test set (YAML)" in [d.proto.label for d in at.get("download_button")]
    [run] = [b for b in at.button if b.label == "Run the feedback cases"]
    run.click().run()
    assert not at.exception and not at.error
    assert [m.label for m in at.metric][0] == "Correct" and at.metric[0].value == "1.00"  # the 👍 answer came back
