"""Cold start: time from launching the app (or the CLI) to its first answer, and peak memory.

  app:  `streamlit run streamlit_app.py`, a headless Chromium asks a question and waits for
        the cited answer; peak RSS of the Streamlit process (VmHWM).
  cli:  `rag ask` as a fresh process; peak RSS of the child (ru_maxrss).
Each with an index already built and with an empty index (the first start ingests).

    .venv/bin/python bench/cold_start.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "What did Pashinyan say Armenia was ready to unblock?"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def app_run(index: Path) -> tuple[float, float]:
    from playwright.sync_api import sync_playwright

    port = free_port()
    env = {**os.environ, "RAG_CHROMA_PATH": str(index)}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"), "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
            page = browser.new_page()
            for _ in range(600):
                try:
                    page.goto(f"http://127.0.0.1:{port}")
                    break
                except Exception:  # not listening yet
                    time.sleep(0.1)
            box = page.get_by_placeholder("Ask about the documents…")
            box.wait_for(timeout=300_000)
            box.fill(QUESTION)
            box.press("Enter")
            page.locator('[data-testid="stChatMessage"]').nth(1).get_by_text("Sources").wait_for(timeout=300_000)
            elapsed = time.perf_counter() - start
            browser.close()
        return elapsed, peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def cli_run(index: Path) -> tuple[float, float]:
    env = {**os.environ, "RAG_CHROMA_PATH": str(index)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rag.cli", "ask", QUESTION, "--json"], cwd=ROOT, env=env, check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    return elapsed, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, run in (("cli", cli_run), ("app", app_run)):
            for state in ("empty index", "built index"):
                times, peaks = [], []
                for i in range(args.runs):
                    index = Path(tmp) / f"{name}-{i}" if state == "empty index" else Path(tmp) / "shared"
                    if state == "built index" and not index.exists():
                        cli_run(index)
                    seconds, peak = run(index)
                    times.append(seconds)
                    peaks.append(peak)
                    print(f"  {name} {state} run {i + 1}: {seconds:.1f} s, peak RSS {peak:.0f} MB", file=sys.stderr, flush=True)
                rows.append((name, state, statistics.median(times), max(peaks)))
    print(f"{'door':<6}{'index':<14}{'launch to first answer (median s)':>36}{'peak RSS MB':>14}")
    for name, state, seconds, peak in rows:
        print(f"{name:<6}{state:<14}{seconds:>36.1f}{peak:>14.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
