"""The `rag` command: argument parsing and printing only; the work happens in the rag modules."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from rag.errors import RagError
from rag.schema import Answer, Turn
from rag.settings import Settings, load_settings


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Flags given on the command line, nested as the settings file nests them."""
    pairs = {
        ("corpus", "path"): getattr(args, "corpus", None),
        ("chroma", "path"): getattr(args, "index", None),
        ("llm", "backend"): getattr(args, "llm", None),
        ("llm", "model"): getattr(args, "llm_model", None),
        ("llm", "base_url"): getattr(args, "llm_base_url", None),
        ("retrieval", "top_k"): getattr(args, "top_k", None),
    }
    nested: dict[str, Any] = {}
    for (group, key), value in pairs.items():
        if value is not None:
            nested.setdefault(group, {})[key] = value
    return nested


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="settings file (default: ./rag.toml, or $RAG_CONFIG)")
    parser.add_argument("--corpus", help="corpus folder (corpus.path)")
    parser.add_argument("--index", help="index folder (chroma.path)")
    parser.add_argument("--llm", help="LLM backend: embedded, openai, openai-compatible, ollama, mock")
    parser.add_argument("--llm-model", help="preset, GGUF path or the server's model name")
    parser.add_argument("--llm-base-url", help="base URL of an OpenAI-compatible or Ollama server")
    parser.add_argument("--top-k", type=int, help="passages given to the LLM at most")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag", description="Grounded question answering over a folder of documents.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="index the corpus folder (incremental)")
    _common(p)
    p.add_argument("path", nargs="?", help="folder to index (default: corpus.path)")
    p.add_argument("--rebuild", action="store_true", help="drop the index first (the corpus is not touched)")

    p = sub.add_parser("ask", help="answer one question")
    _common(p)
    p.add_argument("question")
    p.add_argument("--json", action="store_true", help="print the Answer as one JSON object")
    p.add_argument("--history", type=Path, help="JSON file with earlier turns: [{role, content}, ...]")

    p = sub.add_parser("chat", help="chat in the terminal (follow-ups use the history)")
    _common(p)

    p = sub.add_parser("doctor", help="print the configuration and check every backend")
    _common(p)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = _overrides(args)
    if getattr(args, "path", None):
        overrides.setdefault("corpus", {})["path"] = args.path
    return load_settings(args.config, overrides)


def _engine(settings: Settings, quiet: bool = False):  # noqa: ANN202
    from rag.engine import build_engine

    if not quiet:
        print("Loading models and index…", file=sys.stderr, flush=True)
    engine = build_engine(settings)
    if engine.first_ingest and not quiet:
        print(f"Indexed the corpus: {engine.first_ingest.summary()}", file=sys.stderr)
    return engine


def cmd_ingest(args: argparse.Namespace) -> int:
    from rag.backends import build_embedding, embed_label
    from rag.index import ingest, open_index

    settings = _settings(args)
    embedder = build_embedding(settings.embed)
    index = open_index(settings, embedder, embed_label(settings.embed))
    _, report = ingest(index, rebuild_first=args.rebuild, on_wait=lambda msg: print(msg, file=sys.stderr, flush=True))
    for label, names in (("added", report.added), ("updated", report.updated), ("removed", report.removed)):
        for name in names:
            print(f"{label:>9}  {name}")
    for item in report.skipped:
        print(f"{'skipped':>9}  {item.file}: {item.reason}")
    if report.rebuilt:
        print("(the index was rebuilt: it had been built with other embedding or chunking settings)")
    print(f"{report.folder}: {report.summary()}")
    return 0


def _read_history(path: Path | None) -> list[Turn]:
    if path is None:
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [Turn.model_validate(turn) for turn in data]
    except (OSError, ValueError, TypeError) as exc:
        raise RagError(f"--history {path}: expected a JSON list of {{role: user|assistant, content}} ({exc})") from exc


def print_answer(answer: Answer, streamed: bool) -> None:
    """After a streamed draft: the cited answer (or the refusal) and its sources."""
    if streamed:
        print()
    if answer.refused:
        why = f" ({answer.refusal_reason})" if answer.refusal_reason and answer.draft else ""
        print(f"\n{answer.answer}{why}" if streamed and answer.draft else ("" if streamed else answer.answer))
        closest = answer.passages[:3]
        if closest and answer.refusal_reason != "no question":
            print("Closest passages:")
            for p in closest:
                print(f"  - {p.source}: {p.text[:160].strip()}…")
        return
    if not streamed:
        print(answer.answer)
    else:
        print(f"\nWith citations: {answer.answer}")
    seen: set[tuple[int, str]] = set()
    if answer.citations:
        print("Sources:")
    for c in answer.citations:
        if (c.n, c.quote) in seen:
            continue
        seen.add((c.n, c.quote))
        mark = "verified" if c.verified else "NOT verified"
        span = f", chars {c.start}-{c.end}" if c.start is not None else ""
        print(f"  [{c.n}] {c.source}{span} ({mark}): \"{c.quote}\"")
    for notice in answer.notices:
        print(f"Note: {notice}")


def _stream(engine, question: str, history: Sequence[Turn], show: bool) -> Answer:  # noqa: ANN001
    from rag.answer import stream_answer

    stream = stream_answer(engine, question, history)
    for delta in stream:
        if show:
            print(delta, end="", flush=True)
    assert stream.answer is not None
    return stream.answer


def cmd_ask(args: argparse.Namespace) -> int:
    settings = _settings(args)
    history = _read_history(args.history)
    engine = _engine(settings, quiet=args.json)
    answer = _stream(engine, args.question, history, show=not args.json)
    if args.json:
        print(answer.model_dump_json(indent=2))
    else:
        print_answer(answer, streamed=True)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    settings = _settings(args)
    engine = _engine(settings)
    history: list[Turn] = []
    print("Ask about the documents. /new starts over, /quit (or Ctrl-D) leaves.")
    while True:
        try:
            question = input("\nyou> ").strip()
        except EOFError:
            print()
            return 0
        if question in ("/quit", "/exit"):
            return 0
        if question == "/new":
            history.clear()
            print("(new conversation)")
            continue
        if not question:
            continue
        print("bot> ", end="", flush=True)
        try:
            answer = _stream(engine, question, history, show=True)
        except RagError as exc:
            print(f"\nError: {exc}")
            continue
        print_answer(answer, streamed=True)
        history += [Turn(role="user", content=question), Turn(role="assistant", content=answer.answer)]


def cmd_doctor(args: argparse.Namespace) -> int:
    from rag.doctor import describe, run_checks
    from rag.settings import find_config

    settings = _settings(args)
    print(f"Settings file: {find_config(args.config) or '(none: defaults and environment)'}")
    print(describe(settings))
    print()
    healthy = True
    for check in run_checks(settings):
        mark = "ok  " if check.ok else "FAIL"
        print(f"[{mark}] {check.name}: {check.detail}", flush=True)
        if not check.ok:
            healthy = False
            if check.fix:
                print(f"       fix: {check.fix}")
    print("\nAll checks passed." if healthy else "\nSome checks failed.")
    return 0 if healthy else 1


COMMANDS = {"ingest": cmd_ingest, "ask": cmd_ask, "chat": cmd_chat, "doctor": cmd_doctor}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except RagError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
