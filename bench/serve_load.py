"""Load on `rag serve`: N concurrent clients, a bounded number of chat requests each level.

Prints, per number of clients, the throughput, p50/p95 latency of a whole (non-streamed)
answer, and the errors. Without --url it starts one replica over the seed corpus with the
mock LLM (the pipeline's own cost: retrieval, citation, checks); with --url it loads a
running replica (or a balancer in front of several).

    .venv/bin/python bench/serve_load.py [--clients 1 4 16] [--requests 32] [--url URL --key KEY]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import httpx

from cold_start import free_port

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "Who will meet in Moscow next week, according to Putin?",
    "What did Pashinyan say Armenia was ready to unblock?",
    "What is the boiling point of liquid nitrogen in kelvin?",  # refused: outside the documents
]


@contextmanager
def replica(workdir: Path) -> Iterator[str]:
    """One `rag serve` over a copy of the seeds with the mock LLM, ready; stopped on exit."""
    shutil.copytree(ROOT / "seeds", workdir / "corpus")
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAG_")}, "RAG_CORPUS_PATH": str(workdir / "corpus"),
           "RAG_CHROMA_PATH": str(workdir / "index"), "RAG_LLM_BACKEND": "mock", "RAG_SERVER_MAX_CONCURRENT": "16"}
    log = open(workdir / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--port", str(port)], env=env, cwd=workdir,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while not _ready(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"rag serve did not start:\n{(workdir / 'serve.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def client_run(url: str, key: str | None, count: int, offset: int) -> list[tuple[float, int, str]]:
    """`count` questions one after another; (seconds, status, error message) of each (status 0: no reply)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    results = []
    with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
        for i in range(count):
            body = {"model": "rag", "messages": [{"role": "user", "content": QUESTIONS[(offset + i) % len(QUESTIONS)]}]}
            start = time.perf_counter()
            try:
                reply = client.post("/v1/chat/completions", json=body)
                status, error = reply.status_code, "" if reply.status_code == 200 else reply.json()["error"]["message"]
            except httpx.HTTPError as exc:
                status, error = 0, f"{type(exc).__name__}: {exc}"
            results.append((time.perf_counter() - start, status, error))
    return results


def level(url: str, key: str | None, clients: int, requests: int) -> dict[str, Any]:
    share = [requests // clients + (i < requests % clients) for i in range(clients)]
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        runs = list(pool.map(lambda i: client_run(url, key, share[i], i), range(clients)))
    wall = time.perf_counter() - start
    results = [r for run in runs for r in run]
    latencies = sorted(seconds for seconds, status, _ in results if status == 200)
    p95 = statistics.quantiles(latencies, n=20)[-1] if len(latencies) > 1 else (latencies or [float("nan")])[0]
    errors = Counter(f"HTTP {status}: {error[:160]}" for _, status, error in results if status != 200)
    return {"clients": clients, "requests": len(results), "errors": errors, "rps": len(latencies) / wall,
            "p50": statistics.median(latencies) if latencies else float("nan"), "p95": p95}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=32, help="requests per level, shared by its clients")
    parser.add_argument("--url", help="a running replica (default: start one with the mock LLM)")
    parser.add_argument("--key", help="its API key")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with (replica(Path(tmp)) if args.url is None else _given(args.url)) as url:
            client_run(url, args.key, 1, 0)  # warm: the first answer loads what is lazy
            print(f"{'clients':>7} {'requests':>8} {'errors':>6} {'answers/s':>9} {'p50 s':>7} {'p95 s':>7}   ({url})")
            for clients in args.clients:
                row = level(url, args.key, clients, max(args.requests, clients))
                print(f"{row['clients']:>7} {row['requests']:>8} {row['errors'].total():>6} {row['rps']:>9.2f} {row['p50']:>7.3f} "
                      f"{row['p95']:>7.3f}", flush=True)
                for error, times in row["errors"].items():
                    print(f"{'':>9}{times} x {error}")


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url.rstrip("/")


if __name__ == "__main__":
    main()
