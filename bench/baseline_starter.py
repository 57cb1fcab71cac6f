"""The LlamaIndex starter pipeline as a baseline, scored by the same evaluator as ours, in the same run.

The starter: SimpleDirectoryReader over the corpus, VectorStoreIndex.from_documents (default
chunking), index.as_query_engine() with default settings, answering with the same LLM and
the same embedding model as our pipeline. It has no chat memory (follow-ups are asked
alone), writes no citations, and refuses only when the model says so. The prompt each
pipeline sends is counted in tokens.

    .venv/bin/python bench/baseline_starter.py [--limit N] [--out reports/]

writes reports/rag.json, reports/starter.json and reports/comparison.html, and prints both
summaries side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from llama_index.core import SimpleDirectoryReader, VectorStoreIndex
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.llm import LLMCompletionStartEvent

from rag.citations import is_refusal
from rag.cli import summary_table
from rag.engine import Engine, build_engine
from rag.evaluate import Case, evaluate, load_testset, run_cases
from rag.report import METRICS, render_html
from rag.schema import Answer, Backend, RetrievedRef, Timings
from rag.settings import load_settings
from rag.worker import LocalModel


class PromptRecorder(BaseEventHandler):
    """Keeps the last prompt LlamaIndex sends to the LLM (the starter builds it inside LlamaIndex)."""

    last: str = ""

    @classmethod
    def class_name(cls) -> str:
        return "PromptRecorder"

    def handle(self, event, **kwargs) -> None:  # noqa: ANN001
        if isinstance(event, LLMCompletionStartEvent):
            PromptRecorder.last = event.prompt


def starter_answer_fn(engine: Engine):  # noqa: ANN201
    """Answer cases with the starter query engine (same LLM and embedder as `engine`)."""
    get_dispatcher().add_event_handler(PromptRecorder())
    documents = SimpleDirectoryReader(str(engine.settings.corpus.path), filename_as_id=True, exclude_hidden=False).load_data()
    index = VectorStoreIndex.from_documents(documents, embed_model=engine.embed_model)
    query_engine = index.as_query_engine(llm=engine.llm, streaming=True)
    backend = Backend(llm=engine.backend.llm + " (starter)", embedding=engine.backend.embedding)

    def answer(case: Case) -> Answer:
        start = time.perf_counter()
        with engine.generation_lock:
            response = query_engine.query(case.question)
            first, text = None, ""
            for token in response.response_gen:
                if first is None and token:
                    first = time.perf_counter() - start
                text += token
        text = text.strip()
        retrieved = [
            RetrievedRef(source=str(n.node.metadata.get("file_name", "?")), score=float(n.score or 0), text=n.node.get_content())
            for n in response.source_nodes
        ]
        tokens = engine.llm.count_tokens(PromptRecorder.last) if isinstance(engine.llm, LocalModel) else None  # local models only
        return Answer(
            question=case.question, answer=text, refused=is_refusal(text), retrieved=retrieved, backend=backend, prompt_tokens=tokens,
            timings=Timings(first_token_s=round(first, 3) if first else None, total_s=round(time.perf_counter() - start, 3)),
        )

    return answer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testset", type=Path, default=None)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args()

    settings = load_settings()
    cases = load_testset(args.testset or settings.eval.testset)
    cases = cases[: args.limit] if args.limit else cases
    engine = build_engine(settings)
    progress = lambda i, n, r: print(f"  {i}/{n} {r.id}: {'pass' if r.passed else 'FAIL'}", file=sys.stderr)  # noqa: E731

    print("Our pipeline:", file=sys.stderr)
    ours = evaluate(engine, cases, progress)
    print("LlamaIndex starter:", file=sys.stderr)
    starter = run_cases(cases, starter_answer_fn(engine), engine.embed, progress)
    starter["pipeline"] = {"name": "starter", "backend": {"llm": engine.backend.llm, "embedding": engine.backend.embedding}}
    for report in (ours, starter):
        report["testset"] = str(args.testset or settings.eval.testset)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rag.json").write_text(json.dumps(ours, indent=2), encoding="utf-8")
    (args.out / "starter.json").write_text(json.dumps(starter, indent=2), encoding="utf-8")
    (args.out / "comparison.html").write_text(render_html(ours, starter, "rag vs the LlamaIndex starter"), encoding="utf-8")
    print(summary_table(ours, starter, METRICS))
    print(f"Reports: {args.out / 'rag.json'}, {args.out / 'starter.json'}, {args.out / 'comparison.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
