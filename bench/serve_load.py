"""Load on `rag serve`: N concurrent clients, a bounded number of chat requests each level, on one replica and on two.

Prints, per number of replicas and of clients, the throughput, p50/p95 latency of a whole
(non-streamed) answer, and the errors. Without --url it starts the deployment itself, all on
loopback: one `chroma run` server holding the index and the given numbers of `rag serve`
replicas over it (the first ingests the seeds, the others only read). Clients are spread over
the replicas round-robin, as a balancer in front of them would. `--llm mock` (the default)
measures the pipeline's own cost (retrieval, citation, checks); `--llm llama-server` puts one
`python -m llama_cpp.server` (SmolLM2-135M, the model that ships for tests) behind every
replica and measures end to end. With --url it loads running replicas instead.

    .venv/bin/python bench/serve_load.py [--replicas 1 2] [--clients 1 4 16] [--requests 32] [--llm mock|llama-server]
    .venv/bin/python bench/serve_load.py --url http://a:8090 http://b:8090 --key KEY
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
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator

import httpx

from cold_start import free_port
from ingest_scale import start_chroma

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import start_llama_server  # noqa: E402  (the llama.cpp server as the tests start it)

QUESTIONS = [
    "Who will meet in Moscow next week, according to Putin?",
    "What did Pashinyan say Armenia was ready to unblock?",
    "What is the boiling point of liquid nitrogen in kelvin?",  # refused: outside the documents
]


@contextmanager
def replica(workdir: Path, corpus: Path, env: dict[str, str]) -> Iterator[str]:
    """One `rag serve` over `corpus` with `env` (the backend, the shared index), ready; stopped on exit."""
    workdir.mkdir(parents=True)
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAG_")}, "RAG_CORPUS_PATH": str(corpus),
           "RAG_CHROMA_PATH": str(workdir / "index"), "RAG_SERVER_MAX_CONCURRENT": "16", **env}
    log = open(workdir / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--port", str(port)], env=env, cwd=workdir,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while not _ready(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"rag serve did not start:\n{(workdir / 'serve.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@contextmanager
def deployment(root: Path, replicas: int, llm: str) -> Iterator[list[str]]:
    """A `chroma run` server, the LLM (mock, or a llama.cpp server) and `replicas` `rag serve` over them."""
    corpus = shutil.copytree(ROOT / "seeds", root / "corpus")
    with ExitStack() as stack:
        chroma, chroma_port = start_chroma(root / "chroma-data")
        stack.callback(chroma.terminate)
        env = {"RAG_CHROMA_MODE": "http", "RAG_CHROMA_PORT": str(chroma_port), "RAG_LLM_BACKEND": "mock"}
        if llm == "llama-server":
            env.update(_llama_server(root, stack))
        # the first replica ingests before the others start, as a deployment's first start would
        urls = [stack.enter_context(replica(root / f"replica-{n}", corpus, env)) for n in range(replicas)]
        yield urls


def _llama_server(root: Path, stack: ExitStack) -> dict[str, str]:
    """One llama.cpp server (SmolLM2-135M) for every replica; the settings that point a replica at it."""
    from rag.backends import ensure_gguf

    port = free_port()
    # --interrupt_requests False: by default a new request cuts the answer being streamed (a 502 in the replica)
    server = start_llama_server(ensure_gguf("smollm2-135m", root / "models"), port, root / "llm.log",
                                "--interrupt_requests", "False")
    stack.callback(server.terminate)
    return {"RAG_LLM_BACKEND": "openai-compatible", "RAG_LLM_BASE_URL": f"http://127.0.0.1:{port}/v1",
            "RAG_LLM_MODEL": "smollm2", "RAG_ANSWER_SUPPORT_CHECK": "lexical"}  # SmolLM2 cannot judge support


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def client_run(url: str, key: str | None, count: int, offset: int) -> list[tuple[float, int, str]]:
    """`count` questions one after another to `url`; (seconds, status, error message) of each (status 0: no reply)."""
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


def level(urls: list[str], key: str | None, clients: int, requests: int) -> dict[str, Any]:
    """`requests` shared by `clients` concurrent clients, client i on replica i mod len(urls)."""
    share = [requests // clients + (i < requests % clients) for i in range(clients)]
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        runs = list(pool.map(lambda i: client_run(urls[i % len(urls)], key, share[i], i), range(clients)))
    wall = time.perf_counter() - start
    results = [r for run in runs for r in run]
    latencies = sorted(seconds for seconds, status, _ in results if status == 200)
    p95 = statistics.quantiles(latencies, n=20)[-1] if len(latencies) > 1 else (latencies or [float("nan")])[0]
    errors = Counter(f"HTTP {status}: {error[:160]}" for _, status, error in results if status != 200)
    return {"clients": clients, "requests": len(results), "errors": errors, "rps": len(latencies) / wall,
            "p50": statistics.median(latencies) if latencies else float("nan"), "p95": p95}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2], help="numbers of replicas to measure")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=32, help="requests per level, shared by its clients")
    parser.add_argument("--llm", choices=["mock", "llama-server"], default="mock")
    parser.add_argument("--url", nargs="+", help="running replicas (default: start the deployment)")
    parser.add_argument("--key", help="their API key")
    args = parser.parse_args()
    print(f"{'replicas':>8} {'clients':>7} {'requests':>8} {'errors':>6} {'answers/s':>9} {'p50 s':>7} {'p95 s':>7}")
    for replicas in [len(args.url)] if args.url else args.replicas:
        with tempfile.TemporaryDirectory() as tmp, \
                (deployment(Path(tmp), replicas, args.llm) if args.url is None else _given(args.url)) as urls:
            for url in urls:
                client_run(url, args.key, 1, 0)  # warm: the first answer loads what is lazy
            for clients in args.clients:
                row = level(urls, args.key, clients, max(args.requests, clients))
                print(f"{replicas:>8} {row['clients']:>7} {row['requests']:>8} {row['errors'].total():>6} {row['rps']:>9.2f} "
                      f"{row['p50']:>7.3f} {row['p95']:>7.3f}", flush=True)
                for error, times in row["errors"].items():
                    print(f"{'':>9}{times} x {error}")


@contextmanager
def _given(urls: list[str]) -> Iterator[list[str]]:
    yield [url.rstrip("/") for url in urls]


if __name__ == "__main__":
    main()
