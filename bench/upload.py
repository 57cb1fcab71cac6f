"""Upload-to-answerable time: a 1 MB PDF added through the chat's upload path, then a question only it answers.

Two PDFs of the same size: one that is all text (about 250 pages: the most text a 1 MB PDF
holds, so the most to index) and one of 20 text pages whose other bytes stand for fonts and
images (a typical report). Each is added to a fresh copy of the seeds with `add_documents`
(check, copy in, incremental index), the exact path the app's "Add documents" takes, and then
asked about a fact that only it states. Timed: the upload (check + copy + index), the first
answer, and the two together. Runs --repeats times and prints medians.

    .venv/bin/python bench/upload.py [--repeats 3] [--llm mock|embedded]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from formats import write_pdf  # noqa: E402

from rag.answer import ask  # noqa: E402
from rag.backends import build_embedding  # noqa: E402
from rag.corpus import extract_text  # noqa: E402
from rag.engine import build_engine  # noqa: E402
from rag.settings import load_settings  # noqa: E402
from rag.uploads import Upload, add_documents  # noqa: E402

MB = 2**20
NEEDLE = "The harbour master of Port Varen in 1911 was Odile Marchetti, who kept the tide ledger."
QUESTION = "Who was the harbour master of Port Varen in 1911?"


def _lines(n: int) -> list[str]:
    """Varied report sentences (no two chunks alike), with the needle in the middle."""
    towns = ["Aldmere", "Brisk", "Corvan", "Dunhollow", "Eskar", "Fennick", "Galloway Cross", "Harrow"]
    goods = ["timber", "salt", "wool", "copper", "grain", "tar", "linen", "slate"]
    lines = [f"In {1850 + i % 60} the quay at {towns[i % 8]} shipped {100 + (i * 37) % 900} tons of "
             f"{goods[(i // 8) % 8]} to {towns[(i + 3) % 8]}, entry {i}." for i in range(n)]
    lines[n // 2] = NEEDLE
    return lines


def make_pdf(folder: Path, kind: str) -> Path:
    """A PDF of exactly about 1 MB: all text, or 20 pages of text padded with binary content."""
    path = folder / f"harbour-{kind}.pdf"
    if kind == "text":
        n = 1000
        while write_pdf(path, _lines(n)).stat().st_size < MB:
            n = int(n * MB / path.stat().st_size) + 1
    else:
        size = write_pdf(path, _lines(20 * 48)).stat().st_size
        write_pdf(path, _lines(20 * 48), padding=MB - size)
    return path


def run_once(pdf: Path, embedder, llm: str) -> dict[str, float]:  # noqa: ANN001
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        shutil.copytree(ROOT / "seeds", corpus)
        settings = load_settings(overrides={"corpus": {"path": str(corpus)}, "chroma": {"path": f"{tmp}/index"},
                                            "llm": {"backend": llm}})
        engine = build_engine(settings, embed_model=embedder)
        engine.ingest()  # the app's index exists before the upload
        t0 = time.perf_counter()
        result = add_documents(engine, [Upload(pdf.name, pdf.read_bytes())])
        t1 = time.perf_counter()
        answer = ask(engine, QUESTION)
        t2 = time.perf_counter()
        assert result.added and not result.skipped, result
        cited = {c.source for c in answer.citations}
        ok = not answer.refused and "Marchetti" in answer.answer and any(pdf.name in s for s in cited)
        return {"upload_s": t1 - t0, "answer_s": t2 - t1, "total_s": t2 - t0, "answered": float(ok)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--llm", default="mock", help="mock (the pipeline alone) or embedded (the real model)")
    args = parser.parse_args()
    embedder = build_embedding(load_settings().embed)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("text", "report"):
            pdf = make_pdf(Path(tmp), kind)
            text = extract_text(pdf)
            runs = [run_once(pdf, embedder, args.llm) for _ in range(args.repeats)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(f"{kind:>6} PDF {pdf.stat().st_size / MB:.2f} MB, {len(text) / 1000:.0f}k characters of text: "
                  f"upload (check+copy+index) p50 {med['upload_s']:.1f} s, first answer ({args.llm}) p50 {med['answer_s']:.1f} s, "
                  f"upload-to-answered p50 {med['total_s']:.1f} s; answered with a citation of the PDF in "
                  f"{sum(r['answered'] for r in runs):.0f}/{len(runs)} runs")


if __name__ == "__main__":
    main()
