"""How the embedded model should run on a CPU, measured in one run: extra buffer types, and the worker process.

Prints medians, all from this run (this machine is noisy, so each question is asked of every
configuration in turn):

  raw llama.cpp, default model, a ~360-token prompt: prefill and decode tokens/s,
      weights in llama.cpp's extra buffer types (CPU repack) vs without them;
  our pipeline over the test set, time to first token and total per answer:
      in-process model (the old path)  vs  worker process (crash isolation, the default)
      vs  worker process with extra buffer types.

    .venv/bin/python bench/cpu_backend.py [--limit N] [--reps N]

The llama.cpp `make setup` builds holds no AMX code, so "extra buffer types" here means CPU
repacking only (on a native build with AMX it would also mean the AMX kernels that crash).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time

from latency import cache_prefix, in_process_llm  # bench/ is the script's folder
from rag import native
from rag.answer import ask, warm_up
from rag.backends import build_embedded_llm, build_llm
from rag.engine import build_engine
from rag.evaluate import load_testset
from rag.settings import load_settings

PROMPT_SENTENCE = "Armenia and Azerbaijan have been locked in a decades-long conflict over the Karabakh region. "


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else float("nan")


def raw_speeds(model, prompt_tokens: list[int], decode: int = 64) -> tuple[float, float]:  # noqa: ANN001
    """Prefill and decode tokens/s of a llama_cpp.Llama from an empty KV cache."""
    model.reset()
    start = time.perf_counter()
    model.eval(prompt_tokens)
    prefill = len(prompt_tokens) / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(decode):
        token = model.sample(temp=0.0)
        model.eval([token])
    return prefill, decode / (time.perf_counter() - start)


def raw_section(settings, reps: int) -> None:  # noqa: ANN001
    models = {}
    for name, extra in (("without extra buffers", False), ("with extra buffers (repack)", True)):
        native.use_extra_buffers(extra)
        models[name] = build_embedded_llm(settings.llm, settings.cache_dir)._model  # noqa: SLF001
    native.use_extra_buffers(settings.llm.extra_buffers)
    any_model = next(iter(models.values()))
    tokens = any_model.tokenize((PROMPT_SENTENCE * 40).encode())[:360]
    speeds: dict[str, list[tuple[float, float]]] = {name: [] for name in models}
    for _ in range(reps):
        for name, model in models.items():
            speeds[name].append(raw_speeds(model, tokens))
    print(f"Raw llama.cpp, {len(tokens)}-token prompt, {settings.llm.threads or 'all'} threads, medians of {reps}:")
    for name, rows in speeds.items():
        print(f"  {name:<30} prefill {median([r[0] for r in rows]):>7.1f} tok/s   decode {median([r[1] for r in rows]):>6.1f} tok/s")
    print(f"  ({native.system_info()})")
    del models


def pipeline_section(settings, limit: int | None) -> None:  # noqa: ANN001
    base = build_engine(settings)
    configs = {
        "in-process (old path)": dataclasses.replace(base, _llm=in_process_llm(settings)),
        "worker process (default)": dataclasses.replace(base, _llm=build_llm(settings.llm, settings.cache_dir)),
        "worker + extra buffers": dataclasses.replace(
            base, _llm=build_llm(settings.llm.model_copy(update={"extra_buffers": True}), settings.cache_dir)),
    }
    for name, engine in configs.items():
        if name.startswith("in-process"):
            cache_prefix(engine.llm)
        else:
            warm_up(engine)
    cases = load_testset(settings.eval.testset)[:limit] if limit else load_testset(settings.eval.testset)
    ttft: dict[str, list[float]] = {name: [] for name in configs}
    total: dict[str, list[float]] = {name: [] for name in configs}
    for case in cases:
        for name, engine in configs.items():
            answer = ask(engine, case.question, case.history)
            if answer.timings.first_token_s is not None:
                ttft[name].append(answer.timings.first_token_s)
                total[name].append(answer.timings.total_s)
        print(f"  {case.id}: " + " | ".join(f"{n.split()[0]} {total[n][-1] if total[n] else 0:.2f}s" for n in configs),
              file=sys.stderr, flush=True)
    print(f"\nOur pipeline over {len(cases)} test-set questions ({len(ttft[next(iter(configs))])} generated answers), medians:")
    for name in configs:
        print(f"  {name:<28} TTFT {median(ttft[name]):>6.2f} s   total {median(total[name]):>6.2f} s")
    old, worker = "in-process (old path)", "worker process (default)"
    print(f"Crash isolation overhead (worker / in-process, p50): TTFT {median(ttft[worker]) / median(ttft[old]) - 1:+.1%}, "
          f"total {median(total[worker]) / median(total[old]) - 1:+.1%}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, help="only the first N test-set questions")
    parser.add_argument("--reps", type=int, default=4, help="raw llama.cpp repetitions")
    args = parser.parse_args()
    settings = load_settings()
    raw_section(settings, args.reps)
    pipeline_section(settings, args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
