"""Hybrid retrieval on a second replica against the ingesting one, and how soon an ingest on one is retrieved on the other.

Two engines ("replicas" A and B, each with its own local folder, as on two machines) over one
`chroma run` on loopback; A ingests, B only reads. For each corpus and its test set it prints
`rag eval`'s retrieval metrics through the mock LLM on A and on B: hit rate (recall@k: an expected
source among the passages given to the LLM), MRR and context recall, and the number of cases whose
passages differ between A and B. Then how long B takes to start (the document records and BM25
read from the server), and the seconds from the end of an ingest of a new document on A to B
retrieving it (median of --runs; B checks the index version every `chroma.refresh_s`).

    .venv/bin/python bench/replica_retrieval.py [--sqlite ~/.cache/rag/corpora/sqlite-pages] [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ingest_scale import start_chroma  # bench/ is the script's folder

from rag.backends import build_embedding
from rag.engine import Engine, build_engine
from rag.evaluate import evaluate, load_testset
from rag.settings import load_settings

METRICS = ["hit_rate", "mrr", "context_recall"]
PROBE = "Keeper Odile Varga relit the Quarnel{n} lighthouse in {year}."


def replica(name: str, corpus: Path, folder: Path, port: int, embedder) -> Engine:  # noqa: ANN001
    settings = load_settings(overrides={"corpus": {"path": str(corpus)}, "llm": {"backend": "mock"},
                                        "chroma": {"mode": "http", "port": port, "path": str(folder), "collection": name}})
    return build_engine(settings, embed_model=embedder, auto_ingest=False)


def until(check, seconds: float = 60.0) -> float:  # noqa: ANN001
    """The perf_counter time at which `check()` first holds (polled every 50 ms)."""
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > seconds:
            raise RuntimeError(f"not seen within {seconds} s")
        time.sleep(0.05)
    return time.perf_counter()


def retrieved(b: Engine, source: str, question: str) -> bool:
    """B's hybrid passages hold `source`, and so does its BM25 ranking (vector search alone sees new chunks at once)."""
    passages = {p.source for p in b.retriever.retrieve(question).passages}
    return source in passages and source in {h.node.metadata.get("file_name") for h in b.index.current().bm25.retrieve(question)}


def propagation(a: Engine, b: Engine, runs: int) -> list[float]:
    """Seconds from an ingest (of one new document) finishing on A to B retrieving that document.

    B asks all along, from before the ingest starts, as a replica taking questions does: its
    version checks then fall every `chroma.refresh_s`, not just after the ingest.
    """
    seconds = []
    with ThreadPoolExecutor(1) as pool:
        for n in range(runs):
            path = a.settings.corpus.path / f"replica-probe-{n}.txt"
            path.write_text(PROBE.format(n=n, year=1800 + n) + "\n", encoding="utf-8")
            seen = pool.submit(until, lambda: retrieved(b, path.name, f"Who relit the Quarnel{n} lighthouse?"))
            a.ingest()
            done = time.perf_counter()
            seconds.append(seen.result() - done)
            path.unlink()
            a.ingest()
            pool.submit(until, lambda: path.name not in b.index.titles()).result()
    return seconds


def measure(name: str, corpus: Path, testset: Path, root: Path, port: int, runs: int, embedder) -> dict:  # noqa: ANN001
    folder = shutil.copytree(corpus, root / f"corpus-{name}")
    a = replica(name, folder, root / f"a-{name}", port, embedder)
    report = a.ingest()
    start = time.perf_counter()
    b = replica(name, folder, root / f"b-{name}", port, embedder)
    b_start = time.perf_counter() - start
    cases = load_testset(testset)
    ra, rb = evaluate(a, cases), evaluate(b, cases)
    differ = sum(x["retrieved_sources"] != y["retrieved_sources"] for x, y in zip(ra["cases"], rb["cases"]))
    return {"chunks": report.chunks_total, "cases": len(cases), "A": ra["summary"], "B": rb["summary"], "differ": differ,
            "b_start_s": b_start, "propagation_s": propagation(a, b, runs)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sqlite", type=Path, default=Path.home() / ".cache/rag/corpora/sqlite-pages",
                        help="the SQLite pages (python3 eval/fetch_corpus.py DIR fetches them)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    embedder = build_embedding(load_settings().embed)
    corpora = [("seeds", Path("seeds"), Path("eval/testset.yaml")), ("sqlite", args.sqlite, Path("eval/sqlite_testset.yaml"))]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        server, port = start_chroma(Path(tmp) / "server")
        try:
            for name, corpus, testset in corpora:
                rows.append((name, measure(name, corpus, testset, Path(tmp), port, args.runs, embedder)))
                print(f"  {name}: {rows[-1][1]}", file=sys.stderr, flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"{'corpus':<8}{'chunks':>8}{'cases':>7}{'replica':>9}" + "".join(f"{m:>16}" for m in METRICS) + f"{'cases differ':>14}")
    for name, row in rows:
        for side in ("A", "B"):
            print(f"{name:<8}{row['chunks']:>8}{row['cases']:>7}{side:>9}" + "".join(f"{str(row[side][m]):>16}" for m in METRICS)
                  + f"{row['differ'] if side == 'B' else '':>14}")
    print(f"\n{'corpus':<8}{'B start s':>10}{'ingest on A -> retrieved on B, s (median; all runs)':>56}")
    for name, row in rows:
        runs = ", ".join(f"{s:.2f}" for s in row["propagation_s"])
        print(f"{name:<8}{row['b_start_s']:>10.2f}{statistics.median(row['propagation_s']):>10.2f}  ({runs})")
    print(f"(LLM: mock; chroma.refresh_s = {load_settings().chroma.refresh_s}; B start = open the index, read the document "
          "records and build BM25 from the server's chunks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
