"""Ingestion throughput, unchanged re-ingest and query latency at growing collection sizes.

For each size (chunks) it writes a synthetic corpus, then measures
  ingest: chunks/s of `rag ingest` (split, embed, Chroma upsert, docstore, BM25),
  raw embedding: chunks/s of the same embedding model on the same chunk texts,
  re-ingest of the unchanged corpus (seconds),
  query latency: median retrieval time over 20 questions (embed + hybrid search + budget),
in embedded Chroma and, with --server, against `chroma run` on loopback.

    .venv/bin/python bench/ingest_scale.py [--sizes 1000 10000 100000] [--server]
"""

from __future__ import annotations

import argparse
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from rag.backends import build_embedding, embed_label
from rag.index import ingest, make_splitter, open_index
from rag.retrieve import Retriever
from rag.settings import load_settings

WORDS = ("minister council treaty border river harbour railway election budget report summit talks ceasefire province "
         "capital delegation agreement market export energy pipeline court ruling corridor checkpoint village").split()
NAMES = "Aralia Borvik Cendra Dunmore Estavia Fjordan Galvan Hestia Ivora Jastrow".split()


def sentence(rng: random.Random) -> str:
    words = rng.sample(WORDS, 7)
    return f"{rng.choice(NAMES)} {' '.join(words)} in {rng.randint(1950, 2024)} with {rng.randint(2, 90000)} people."


def write_corpus(folder: Path, chunks: int, seed: int = 7) -> None:
    """About `chunks` 64-token chunks: files of 20 paragraphs of 4 short sentences (~64 tokens each)."""
    rng = random.Random(seed)
    per_file = 20
    for i in range(max(1, chunks // per_file)):
        paragraphs = [" ".join(sentence(rng) for _ in range(4)) for _ in range(per_file)]
        (folder / f"doc{i:06d}.txt").write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_chroma(path: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    binary = shutil.which("chroma", path=str(Path(sys.executable).parent)) or "chroma"
    proc = subprocess.Popen([binary, "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1)
            return proc, port
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("chroma run did not start")


def measure(size: int, mode: str, root: Path, embedder) -> dict:  # noqa: ANN001
    corpus = root / f"corpus-{size}"
    if not corpus.exists():
        corpus.mkdir()
        write_corpus(corpus, size)
    overrides = {"corpus": {"path": str(corpus)}, "chroma": {"path": str(root / f"index-{size}-{mode}"), "mode": mode}}
    server = None
    if mode == "http":
        server, port = start_chroma(root / f"server-{size}")
        overrides["chroma"]["port"] = port
    try:
        settings = load_settings(overrides=overrides)
        index = open_index(settings, embedder, embed_label(settings.embed))
        start = time.perf_counter()
        index, report = ingest(index)
        ingest_s = time.perf_counter() - start
        start = time.perf_counter()
        index, again = ingest(index)
        reingest_s = time.perf_counter() - start
        retriever = Retriever(index)
        rng = random.Random(3)
        times = []
        for _ in range(20):
            question = f"What happened to {rng.choice(NAMES)} and the {rng.choice(WORDS)} in {rng.randint(1950, 2024)}?"
            t0 = time.perf_counter()
            retriever.retrieve(question)
            times.append(time.perf_counter() - t0)
        return {"chunks": report.chunks_total, "ingest_s": ingest_s, "chunks_per_s": report.chunks_added / ingest_s,
                "reingest_s": reingest_s, "query_p50_s": statistics.median(times), "unchanged": len(again.unchanged)}
    finally:
        if server:
            server.terminate()
            server.wait(timeout=30)


def raw_embedding_rate(size: int, root: Path, embedder) -> float:  # noqa: ANN001
    """Chunks/s of the embedding model alone on the same chunks (split the same way)."""
    from rag.corpus import load_corpus

    settings = load_settings()
    docs = load_corpus(root / f"corpus-{size}").documents
    texts = [n.get_content() for n in make_splitter(settings)(docs)]
    start = time.perf_counter()
    embedder.get_text_embedding_batch(texts)
    return len(texts) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--server", action="store_true", help="also measure Chroma in client/server mode")
    args = parser.parse_args()
    embedder = build_embedding(load_settings().embed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for size in args.sizes:
            embedded = measure(size, "embedded", root, embedder)
            raw = raw_embedding_rate(size, root, embedder)
            server = measure(size, "http", root, embedder) if args.server else None
            rows.append((size, embedded, raw, server))
            print(f"  {size}: {embedded} raw={raw:.0f}/s server={server}", file=sys.stderr, flush=True)
    print(f"{'size':>8}{'chunks':>8}{'ingest/s':>10}{'raw emb/s':>11}{'ratio':>7}{'re-ingest s':>12}{'query p50 ms':>14}{'server query ms':>17}")
    for size, e, raw, s in rows:
        server_ms = f"{s['query_p50_s'] * 1000:.1f}" if s else "–"
        print(f"{size:>8}{e['chunks']:>8}{e['chunks_per_s']:>10.0f}{raw:>11.0f}{e['chunks_per_s'] / raw:>7.2f}"
              f"{e['reingest_s']:>12.2f}{e['query_p50_s'] * 1000:>14.1f}{server_ms:>17}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
