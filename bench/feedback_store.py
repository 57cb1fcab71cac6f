"""The feedback store's size and speed: N records (real Answers from the mock pipeline over the seeds),
written by one and by two processes at once, then listed and exported.

Prints the database size per 1,000 records, the median time to store one record, and the
time to read and export them all.

    .venv/bin/python bench/feedback_store.py [--records 1000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from rag.answer import ask
from rag.engine import build_engine
from rag.evaluate import load_testset
from rag.feedback import Feedback, FeedbackStore, Problem, Record, export_cases, record_of, write_cases
from rag.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent


def _write(folder: str, records: list[str]) -> list[float]:
    store, took = FeedbackStore(Path(folder)), []
    for text in records:
        t0 = time.perf_counter()
        store.add(Record.model_validate_json(text))
        took.append(time.perf_counter() - t0)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="rag-feedback-bench-"))
    settings = load_settings(overrides={"corpus": {"path": str(ROOT / "seeds")}, "chroma": {"path": str(folder / "index")},
                                        "llm": {"backend": "mock"}})
    engine = build_engine(settings)
    hashes = engine.index.source_hashes()
    questions = [c.question for c in load_testset(ROOT / "eval" / "testset.yaml")]
    answers = [ask(engine, q) for q in questions]
    feedback = [Feedback(rating=1), Feedback(rating=-1, problem=Problem.WRONG_ANSWER, correction="The deputy prime ministers.")]
    records = [record_of(answers[i % len(answers)], feedback[i % 2], [], settings, hashes).model_dump_json(exclude={"id"})
               for i in range(args.records)]
    for writers in (1, 2):
        target = folder / f"writers-{writers}"
        share = [records[w::writers] for w in range(writers)]
        t0 = time.perf_counter()
        with ProcessPoolExecutor(max_workers=writers) as pool:
            took = [t for got in pool.map(_write, [str(target)] * writers, share) for t in got]
        wall = time.perf_counter() - t0
        store = FeedbackStore(target)
        t1 = time.perf_counter()
        stored = store.records()
        read_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        export = export_cases(stored)
        write_cases(target / "feedback.yaml", export.cases)
        load_testset(target / "feedback.yaml")
        export_s = time.perf_counter() - t2
        size = sum(p.stat().st_size for p in target.glob("rag.sqlite3*"))
        print(f"{writers} writer(s): {len(stored)} records, {size / len(stored) * 1000 / 2**20:.2f} MiB per 1,000 records, "
              f"store p50 {statistics.median(took) * 1000:.1f} ms (p95 {sorted(took)[int(len(took) * 0.95)] * 1000:.1f} ms), "
              f"{len(stored) / wall:.0f} records/s, read all {read_s:.2f} s, export {len(export.cases)} cases {export_s:.2f} s")


if __name__ == "__main__":
    main()
