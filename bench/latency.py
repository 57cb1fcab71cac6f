"""Where an answer's time goes, against raw llama.cpp on the same prompt, and our prompt size against the starter's.

For each test-set question (follow-ups included) it answers through the pipeline, then
gives the very same prompt to the same llama.cpp model directly, from the same cache state
(only the fixed system prompt cached), and prints medians:

  embed query, retrieve, build prompt, time to first token, decode, cite/ground, total
  raw llama.cpp: time to first token, total;  pipeline overhead = 1 - raw total / our total

Prompt size and latency against the LlamaIndex starter: bench/baseline_starter.py.

    .venv/bin/python bench/latency.py [--limit N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from rag import native
from rag.answer import ask, build_messages, warm_up
from rag.backends import build_embedded_llm
from rag.engine import build_engine
from rag.evaluate import load_testset
from rag.settings import load_settings
from rag.worker import cache_prompt_prefix


def in_process_llm(settings):  # noqa: ANN001, ANN201
    """The embedded model in this process (LlamaIndex's LlamaCPP), loaded as the worker loads it."""
    native.use_extra_buffers(settings.llm.extra_buffers)
    return build_embedded_llm(settings.llm, settings.cache_dir)


def cache_prefix(llm) -> None:  # noqa: ANN001
    """Cache the fixed prompt prefix in an in-process model, as the worker's warm-up does."""
    cache_prompt_prefix(llm, build_messages("", []), "Passages:\n")


def raw_llama(llm, prompt: str, max_tokens: int, cached_prefix: bool = True) -> tuple[float, float, int]:  # noqa: ANN001
    """TTFT and total of llama.cpp alone on `prompt`, from the system-prompt-only cache (or an empty one)."""
    model = llm._model  # noqa: SLF001
    model.reset()
    if cached_prefix:
        cache_prefix(llm)  # the state our pipeline runs from: the fixed prefix cached
    start = time.perf_counter()
    first, tokens = None, 0
    for _ in model.create_completion(prompt, max_tokens=max_tokens, temperature=0.0, stream=True):
        if first is None:
            first = time.perf_counter() - start
        tokens += 1
    return first or 0.0, time.perf_counter() - start, tokens


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    settings = load_settings()
    engine = build_engine(settings)
    cases = load_testset(settings.eval.testset)
    cases = cases[: args.limit] if args.limit else cases
    warm_up(engine)
    raw = in_process_llm(settings)
    rows: dict[str, list[float]] = {k: [] for k in ("embed", "retrieve", "prompt", "ttft", "decode", "cite", "total",
                                                    "raw_ttft", "raw_total", "tokens", "condense", "cold_ttft")}
    for case in cases:
        t0 = time.perf_counter()
        engine.embed_model.get_query_embedding(case.question)
        rows["embed"].append(time.perf_counter() - t0)
        answer = ask(engine, case.question, case.history)
        if answer.timings.first_token_s is None:  # refused before generation: no LLM time to compare
            continue
        t0 = time.perf_counter()
        prompt = raw.messages_to_prompt(build_messages(answer.standalone_question or answer.question, answer.passages))
        rows["prompt"].append(time.perf_counter() - t0)
        t = answer.timings
        rows["retrieve"].append(t.retrieve_s)
        rows["condense"].append(t.condense_s)
        rows["ttft"].append(t.first_token_s)
        rows["decode"].append(t.generate_s - (t.first_token_s - t.condense_s - t.retrieve_s))
        rows["cite"].append(t.cite_s)
        rows["total"].append(t.total_s)
        rows["tokens"].append(answer.prompt_tokens or 0)
        raw_first, raw_total, _ = raw_llama(raw, prompt, settings.llm.max_tokens)
        rows["raw_ttft"].append(raw_first)
        rows["raw_total"].append(raw_total)
        rows["cold_ttft"].append(raw_llama(raw, prompt, settings.llm.max_tokens, cached_prefix=False)[0])
        print(f"  {case.id}: ttft {t.first_token_s:.2f}s total {t.total_s:.2f}s | raw ttft {raw_first:.2f}s total {raw_total:.2f}s | "
              f"{answer.prompt_tokens} prompt tokens", file=sys.stderr, flush=True)
    n = len(rows["total"])
    print(f"\nOur pipeline, {n} generated answers of {len(cases)} questions (medians, seconds):")
    for key, label in [("embed", "embed query"), ("retrieve", "retrieve (incl. embed)"), ("condense", "condense follow-up"),
                       ("prompt", "build prompt"), ("ttft", "time to first token"), ("decode", "decode"),
                       ("cite", "cite + ground"), ("total", "total")]:
        print(f"  {label:<24}{median(rows[key]):>8}")
    print(f"  {'prompt tokens':<24}{median(rows['tokens']):>8}")
    print("Raw llama.cpp, same prompts, same cache state:")
    print(f"  {'time to first token':<24}{median(rows['raw_ttft']):>8}")
    print(f"  {'total':<24}{median(rows['raw_total']):>8}")
    print(f"  {'first token, no KV cache':<24}{median(rows['cold_ttft']):>8}   (what reusing the cached system prompt saves)")
    overheads = [1 - raw / ours for raw, ours in zip(rows["raw_total"], rows["total"]) if ours]
    print(f"Pipeline overhead (1 - raw/ours, median per question): {median(overheads):.1%}; "
          f"TTFT ours/raw: {median(rows['ttft']) / median(rows['raw_ttft']):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
