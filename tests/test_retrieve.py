"""Retrieval: fusion, de-duplication, budget, filters, BM25 kept in sync with the corpus."""

from datetime import date
from pathlib import Path

import pytest

from conftest import SEED_A, SEED_B, label
from rag.index import ingest, open_index
from rag.retrieve import Filters, Retriever, fit_budget, fold_duplicates, near_duplicate, reciprocal_rank_fusion
from rag.schema import Passage


def _p(text, source="a.txt", score=0.5):
    return Passage(n=0, node_id=f"{source}:{text[:10]}", source=source, text=text, score=score)


def test_reciprocal_rank_fusion_rewards_agreement_and_respects_weights():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]], [1.0, 1.0], k=60)
    assert max(fused, key=fused.get) == "a"  # ranked 1st and 2nd beats 3rd and 1st
    assert fused["b"] == pytest.approx(1 / 62)
    weighted = reciprocal_rank_fusion([["a", "b"], ["b", "a"]], [1.0, 3.0], k=60)
    assert max(weighted, key=weighted.get) == "b"


def test_near_duplicates_are_folded_and_their_sources_kept():
    a = _p("Putin said the deputy prime ministers of the three countries will meet next week in Moscow.", "a.txt", 0.8)
    b = _p("Putin said the deputy prime ministers of the three countries will meet next week in Moscow to talk.", "b.txt", 0.7)
    c = _p("The ensuing conflict claimed some 30,000 lives.", "b.txt", 0.6)
    assert near_duplicate(a.text, b.text) and not near_duplicate(a.text, c.text)
    kept = fold_duplicates([a, b, c])
    assert [p.text for p in kept] == [a.text, c.text]
    assert kept[0].also_in == ["b.txt"]


def test_budget_keeps_the_best_passages_that_fit_and_numbers_them():
    long = _p("word " * 200)
    short = [_p(f"Fact number {i} is short.") for i in range(5)]
    chosen = fit_budget([short[0], long, *short[1:]], top_k=4, budget=40)
    assert [p.n for p in chosen] == [1, 2, 3, 4] and long not in chosen
    assert fit_budget([long], top_k=3, budget=10) == [long]  # the best passage always goes in


@pytest.fixture
def index(make_settings, embedder):
    settings = make_settings()
    index, _ = ingest(open_index(settings, embedder, label(settings)))
    return index


def test_hybrid_finds_exact_terms_and_reports_cosines(index):
    retrieval = Retriever(index).retrieve("Lachin Corridor checkpoint ICJ")
    assert retrieval.passages and "Lachin" in retrieval.passages[0].text
    assert all(-1 <= p.score <= 1 for p in retrieval.passages)
    assert retrieval.best_score == max(p.score for p in retrieval.passages) > 0.3


def test_filters_by_source_and_date(index):
    retriever = Retriever(index)
    only_a = retriever.retrieve("Who met Putin in Moscow?", filters=Filters(sources=[SEED_A]))
    assert only_a.passages and {p.source for p in only_a.passages} == {SEED_A}
    dated = retriever.retrieve("Who met Putin in Moscow?", filters=Filters(since=date(2023, 5, 1)))
    assert {p.source for p in dated.passages} == {SEED_B}  # the brief has no year: no date
    assert retriever.retrieve("Who met Putin?", filters=Filters(until=date(2020, 1, 1))).passages == []


def test_bm25_follows_edits_and_deletions(index, corpus: Path):
    (corpus / SEED_A).write_text("Zorblax the comet was seen over Yerevan.\n", encoding="utf-8")
    index, _ = ingest(index)
    retriever = Retriever(index)
    texts = " ".join(p.text for p in retriever.retrieve("Shoigu RIA West interfere discredit").passages)
    assert "Shoigu" not in texts  # the stale chunk is gone from BM25 as well as from Chroma
    assert "Zorblax" in retriever.retrieve("Zorblax comet").passages[0].text
    (corpus / SEED_A).unlink()
    index, _ = ingest(index)
    assert all(p.source == SEED_B for p in Retriever(index).retrieve("Zorblax comet Yerevan").passages)


def test_cli_filters(mock_env, monkeypatch, tmp_path, corpus, capsys):
    import json

    from rag.cli import main

    assert main(["ask", "Who will meet in Moscow next week?", "--json", "--source", SEED_B]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {r["source"] for r in data["retrieved"]} == {SEED_B}
    with pytest.raises(SystemExit):
        main(["ask", "x", "--since", "26 May"])
    assert "expected a date as YYYY-MM-DD" in capsys.readouterr().err


def test_a_word_the_question_writes_apart_is_found_where_the_documents_write_it_as_one(index):
    from rag.retrieve import joined_words

    bm25 = index.current().bm25
    assert joined_words("Who brokered the cease fire?", bm25) == ["ceasefire"]
    assert joined_words("Who brokered the truce?", bm25) == []
    hits = Retriever(index)._bm25_hits(bm25, "Who brokered the cease fire in the fall?", None)
    assert hits and "ceasefire" in hits[0].get_content()  # BM25 matches whole terms: "cease fire" alone finds no "ceasefire"


TRAILERS = (
    "Crediting the people who helped\n\n"
    "Besides your own sign-off, add these trailers to credit the people who helped with a patch.\n"
    "Reported-by: credits the person who found the bug that the patch fixes.\n"
    "Acked-by: says that a person who knows the area of the patch likes it.\n"
    "Tested-by: credits the person who tested the patch and saw it work.\n"
    "Suggested-by: credits the person who had the idea behind the patch.\n\n"
    "Mail clients\n\nMost mail clients mangle tabs and long lines; send the patch with git send-email instead.\n"
)


def _trailers_index(make_settings, embedder, corpus: Path, **retrieval):
    (corpus / "trailers.txt").write_text(TRAILERS, encoding="utf-8")
    settings = make_settings(chunking={"chunk_size": 24}, retrieval=retrieval)
    return ingest(open_index(settings, embedder, label(settings)))[0]


def test_the_best_passage_reads_on_into_the_chunks_after_it(make_settings, embedder, corpus: Path):
    question = "Which trailers credit the people who helped with a patch?"
    plain = Retriever(_trailers_index(make_settings, embedder, corpus, window_tokens=0)).retrieve(question, widened=True).passages
    assert "trailers" in plain[0].text and "Suggested-by" not in plain[0].text  # a 24-token chunk stops after the first item or two

    index = _trailers_index(make_settings, embedder, corpus, window_tokens=96, window_passages=1)
    assert Retriever(index).retrieve(question).passages[0].text == plain[0].text  # broad questions rank the chunks as they are
    best, *others = Retriever(index).retrieve(question, widened=True).passages
    assert best.source == "trailers.txt" and "trailers" in best.text
    assert all(name in best.text for name in ("Reported-by", "Acked-by", "Tested-by", "Suggested-by"))
    assert TRAILERS[best.start:best.end].split() == best.text.split()  # one stretch of the document, at its offsets
    assert not any(p.source == best.source and p.start < best.end and best.start < p.end for p in others)  # no chunk twice
    assert [p.n for p in [best, *others]] == list(range(1, len(others) + 2))


def test_a_window_is_cited_at_its_place_in_the_file(make_settings, embedder, corpus: Path):
    from rag.answer import ask
    from rag.engine import build_engine

    index = _trailers_index(make_settings, embedder, corpus, window_tokens=96, window_passages=1)
    answer = ask(build_engine(index.settings, embed_model=embedder), "Which trailer credits the person who tested the patch?")
    assert not answer.refused and "Tested-by" in answer.answer
    cited = [c for c in answer.citations if "Tested-by" in c.quote]
    assert cited and cited[0].verified and TRAILERS[cited[0].start:cited[0].end] == cited[0].quote
