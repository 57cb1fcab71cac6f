"""The `rag` command: argument parsing and printing only; the work happens in the rag modules."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any, Sequence

from rag.errors import RagError
from rag.schema import Answer, Turn
from rag.settings import Settings, load_settings


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Flags given on the command line, nested as the settings file nests them."""
    pairs = {
        ("eval", "judge_backend"): getattr(args, "judge_llm", None),
        ("eval", "judge_model"): getattr(args, "judge_model", None),
        ("eval", "judge_base_url"): getattr(args, "judge_base_url", None),
        ("corpus", "path"): getattr(args, "corpus", None),
        ("chroma", "path"): getattr(args, "index", None),
        ("llm", "backend"): getattr(args, "llm", None),
        ("llm", "model"): getattr(args, "llm_model", None),
        ("llm", "base_url"): getattr(args, "llm_base_url", None),
        ("retrieval", "top_k"): getattr(args, "top_k", None),
        ("server", "host"): getattr(args, "host", None),
        ("server", "port"): getattr(args, "port", None),
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


def _filter_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", action="append", default=[], help="only this corpus file (repeatable)")
    parser.add_argument("--since", type=_day, help="only documents dated on or after YYYY-MM-DD")
    parser.add_argument("--until", type=_day, help="only documents dated on or before YYYY-MM-DD")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from exc


def _filters(args: argparse.Namespace):  # noqa: ANN202
    from rag.retrieve import Filters

    return Filters(sources=args.source, since=args.since, until=args.until)


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
    _filter_flags(p)

    p = sub.add_parser("chat", help="chat in the terminal (follow-ups use the history)")
    _common(p)
    p.add_argument("--resume", metavar="ID", help="continue a kept conversation (from the app's ?c=ID, or --list)")
    p.add_argument("--list", action="store_true", help="list the kept conversations and leave")
    _filter_flags(p)

    p = sub.add_parser("doctor", help="print the configuration and check every backend")
    _common(p)
    p.add_argument("--model", action="store_true", help="check only the LLM: its llama.cpp build and one answer (setup's self-test)")

    p = sub.add_parser("eval", help="run a test set and score the answers")
    _common(p)
    p.add_argument("--testset", type=Path, help="YAML list or JSONL of cases (default: eval.testset)")
    p.add_argument("--json-out", type=Path, help="write the JSON report here")
    p.add_argument("--html-out", type=Path, help="write the HTML report here")
    p.add_argument("--limit", type=int, help="only the first N cases")
    p.add_argument("--compare", type=Path, help="a JSON report (e.g. the starter baseline) to show side by side")
    p.add_argument("--gate", action="store_true", help="exit 1 when a metric is outside eval.thresholds")
    p.add_argument("--judge-llm", help="LLM-as-judge backend (enables faithfulness/correctness metrics)")
    p.add_argument("--judge-model", help="the judge's model")
    p.add_argument("--judge-base-url", help="the judge's server")

    p = sub.add_parser("feedback", help="the 👍/👎 given in the app: list them, or export them as test cases")
    _common(p)
    p.add_argument("action", choices=["list", "export"])
    p.add_argument("--to", type=Path, help="export: the YAML test set to write (e.g. eval/feedback.yaml)")

    p = sub.add_parser("serve", help="the OpenAI-compatible HTTP API (/v1/chat/completions, /docs)")
    _common(p)
    p.add_argument("--host", help="address to listen on (server.host, default 127.0.0.1; others need RAG_SERVER_API_KEYS)")
    p.add_argument("--port", type=int, help="port (server.port, default 8090)")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = _overrides(args)
    if getattr(args, "path", None):
        overrides.setdefault("corpus", {})["path"] = args.path
    return load_settings(args.config, overrides)


def _engine(settings: Settings, quiet: bool = False, warm: bool = False):  # noqa: ANN202
    """The engine; `warm` loads the model and caches the fixed prompt now, for doors that ask many questions."""
    from rag.answer import warm_up
    from rag.engine import build_engine

    if not quiet:
        print("Loading models and index…", file=sys.stderr, flush=True)
    engine = build_engine(settings)
    if engine.first_ingest and not quiet:
        print(f"Indexed the corpus: {engine.first_ingest.summary()}", file=sys.stderr)
    if warm:
        warm_up(engine)
    return engine


def cmd_ingest(args: argparse.Namespace) -> int:
    from rag.backends import LazyEmbedding, embed_label
    from rag.index import ingest, open_or_reset

    settings = _settings(args)
    embedder = LazyEmbedding(settings.embed)  # an unchanged corpus never loads the model
    index = open_or_reset(settings, embedder, embed_label(settings.embed), reset_broken=args.rebuild)
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


def print_answer(answer: Answer) -> None:
    """After the streamed draft: the refusal (if the draft was withheld) or the cited answer, and sources."""
    print()
    if answer.refused:
        if note := answer.withheld_note():  # the streamed draft was not grounded: say so plainly
            print(f"\n{note}")
        if answer.passages and answer.refusal_reason != "no question":
            print("Closest passages:")
            for p in answer.passages[:3]:
                print(f"  - {p.source}: {' '.join(p.text.split())[:160]}…")
        return
    print(f"\nWith citations: {answer.answer}")
    for check in answer.sentences:
        state = "✅ supported" if check.supported else f"⚠️ NOT supported ({check.reason})"
        drafted = f" (the documents' words for the model's “{check.quoted_for}”)" if check.quoted_for else ""
        print(f"  {state}: {check.text}{drafted}")
    if answer.sentences:
        print(f"  (check: {answer.support_check})")
    seen: set[tuple[int, str]] = set()
    if answer.citations:
        print("Sources:")
    for c in answer.citations:
        if (c.n, c.quote) in seen:
            continue
        seen.add((c.n, c.quote))
        mark = "supported" if c.verified else "NOT supported"
        span = f", chars {c.start}-{c.end}" if c.start is not None else ""
        also = f" (also in {', '.join(c.also_in)})" if c.also_in else ""
        print(f"  [{c.n}] {c.source}{span} ({mark}){also}: \"{c.quote}\"")
    for notice in answer.notices:
        print(f"Note: {notice}")


def _stream(engine, question: str, history: Sequence[Turn], show: bool, filters=None) -> Answer:  # noqa: ANN001
    from rag.answer import stream_answer

    stream = stream_answer(engine, question, history, filters=filters)
    for delta in stream:
        if show:
            print(delta, end="", flush=True)
    assert stream.answer is not None
    return stream.answer


def cmd_ask(args: argparse.Namespace) -> int:
    settings = _settings(args)
    history = _read_history(args.history)
    engine = _engine(settings, quiet=args.json)
    answer = _stream(engine, args.question, history, show=not args.json, filters=_filters(args))
    if args.json:
        print(answer.model_dump_json(indent=2))
    else:
        print_answer(answer)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    """A terminal chat, kept like the app's (rag.conversations): --resume ID continues one, --list shows them.
    Each question is kept when it is asked; Ctrl-C stops the answer being written (kept, marked
    interrupted) and the chat goes on; Ctrl-C at the prompt, /quit or Ctrl-D leaves."""
    from rag.conversations import Conversation, ConversationStore

    settings = _settings(args)
    store = ConversationStore(settings.chroma.path)
    if args.list:
        for conv in store.list():
            print(f"{conv.id}  {conv.updated_at}  {conv.title}")
        return 0
    conversation = store.get(args.resume) if args.resume else Conversation()
    engine = _engine(settings, warm=True)
    if conversation.messages:
        print(f"Resuming “{conversation.title}” ({len(conversation.messages) // 2} questions so far).")
    print("Ask about the documents. /new starts over, /quit (or Ctrl-D) leaves; Ctrl-C stops an answer.")
    while True:
        try:
            question = input("\nyou> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            break
        if question in ("/quit", "/exit"):
            break
        if question == "/new":
            conversation = Conversation()
            print("(new conversation)")
            continue
        if question:
            _chat_turn(engine, store, conversation, question, _filters(args))
    if conversation.messages:
        print(f"Kept as {conversation.id}: `rag chat --resume {conversation.id}` continues it.")
    return 0


def _chat_turn(engine, store, conversation, question: str, filters) -> None:  # noqa: ANN001
    """One question of `rag chat`, streamed and kept whatever ends it."""
    from rag.answer import stream_answer
    from rag.conversations import Exchange

    print("bot> ", end="", flush=True)
    exchange = Exchange.ask(store, conversation, question, cause=lambda exc: "Ctrl-C")
    try:
        with exchange:
            for delta in exchange.follow(stream_answer(engine, exchange.question, exchange.history, filters=filters)):
                print(delta, end="", flush=True)
    except KeyboardInterrupt:
        print(f"\n({exchange.reply.note or 'Interrupted.'})")
        return
    reply = exchange.reply
    if reply.answer is not None:
        print_answer(reply.answer)
    else:
        print(f"\nError: {reply.error}")


def cmd_doctor(args: argparse.Namespace) -> int:
    from rag.doctor import describe, llm_checks, run_checks
    from rag.settings import find_config

    settings = _settings(args)
    print(f"Settings file: {find_config(args.config) or '(none: defaults and environment)'}")
    print(describe(settings))
    print()
    healthy = True
    for check in (llm_checks(settings) if args.model else run_checks(settings)):
        mark = "ok  " if check.ok else "FAIL"
        print(f"[{mark}] {check.name}: {check.detail}", flush=True)
        if not check.ok:
            healthy = False
            if check.fix:
                print(f"       fix: {check.fix}")
    print("\nAll checks passed." if healthy else "\nSome checks failed.")
    return 0 if healthy else 1


def cmd_eval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rag.backends import build_llm
    from rag.evaluate import check_thresholds, evaluate, llm_judge, load_testset
    from rag.report import METRICS, render_html

    settings = _settings(args)
    path = args.testset or settings.eval.testset
    cases = load_testset(path)
    cases = cases[: args.limit] if args.limit else cases
    engine = _engine(settings, warm=True)
    judge_settings = settings.eval.judge()
    judge = llm_judge(build_llm(judge_settings, settings.cache_dir)) if judge_settings else None
    bar = tqdm(total=len(cases), unit="case", file=sys.stderr, dynamic_ncols=True)

    def progress(done: int, total: int, result) -> None:  # noqa: ANN001
        bar.update(1)
        bar.set_postfix_str(f"{result.id}: {'pass' if result.passed else 'FAIL'}")

    report = evaluate(engine, cases, progress, judge)
    bar.close()
    report["testset"] = str(path)
    baseline = json.loads(args.compare.read_text(encoding="utf-8")) if args.compare else None
    print(summary_table(report, baseline, METRICS))
    _print_support(report)
    _print_kinds(report)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(report, indent=2), encoding="utf-8")
        print(f"JSON report: {args.json_out}")
    if args.html_out:
        args.html_out.parent.mkdir(parents=True, exist_ok=True)
        args.html_out.write_text(render_html(report, baseline), encoding="utf-8")
        print(f"HTML report: {args.html_out}")
    if args.gate:
        failures = check_thresholds(report["summary"], settings.eval.thresholds)
        for failure in failures:
            print(f"GATE FAILED: {failure}", file=sys.stderr)
        if failures:
            return 1
        print(f"Gate passed ({settings.eval.thresholds}).")
    if report["summary"].get("prefill_tok_s"):
        _print_speed(report["summary"], settings.eval.thresholds)
    return 0


def _print_speed(summary: dict, thresholds: Path) -> None:
    """This machine's prompt speed, and how the gate's latency limits stretch for it."""
    from rag.evaluate import latency_scale, load_limits

    limits = load_limits(thresholds) if thresholds.exists() else {}
    reference = limits.get("reference", {}).get("prefill_tok_s")
    print(f"This machine evaluates prompts at {summary['prefill_tok_s']} tokens/s (the embedded model, measured in this run)"
          + (f"; latency limits x{latency_scale(summary, limits):.2f} against the {reference} tokens/s they were set at." if reference else "."))


def _print_kinds(report: dict) -> None:
    """Per kind of question, when the test set has more than lookups."""
    from rag.report import KIND_COLUMNS, kind_rows

    rows = kind_rows(report)
    if len(rows) < 2 and all(r[0] == "lookup" for r in rows):
        return
    print("By kind: " + " | ".join(label for _, label in KIND_COLUMNS))
    for row in rows:
        print(f"  {row[0]:<12} " + " | ".join(row[1:]))


def _print_support(report: dict) -> None:
    """Which check backed the ✅, the answers it was checked on, and any wrong answer it let through."""
    summary = report["summary"]
    shown = [c["id"] for c in report["cases"] if not c["refused"] and not c.get("error")]
    print(f"Support check: {summary.get('support_check', '?')}")
    print(f"Wrong answers shown with every sentence ✅: {summary['wrong_but_verified']} of {len(shown)} shown answers"
          + (f" ({', '.join(summary['wrong_but_verified_ids'])})" if summary["wrong_but_verified_ids"] else ""))
    if summary.get("stale_cases"):
        stale = [f"{c['id']} ({', '.join(c['stale'])})" for c in report["cases"] if c.get("stale")]
        print(f"Stale cases (a document they rest on changed since they were written): {'; '.join(stale)}")
    if "support_pairs" in summary:
        print(f"Labelled support pairs: {summary['support_pairs']}")
    if "verifier_pairs" in summary:
        print(f"Verifier on {summary['verifier_pairs']} labelled pairs: precision {summary['verifier_precision']}, "
              f"recall {summary['verifier_recall']}; misjudged: {len(summary['verifier_misjudged'])}")


def summary_table(report: dict, baseline: dict | None, metrics: list) -> str:
    """The summary as aligned text columns (ours, and the baseline when given)."""
    lines = [f"{'metric':<34}{'rag':>10}" + (f"{baseline.get('pipeline', {}).get('name', 'baseline'):>12}" if baseline else "")]
    for key, label, _ in metrics:
        ours = report["summary"].get(key)
        theirs = baseline["summary"].get(key) if baseline else None
        if ours is None and theirs is None:
            continue
        cell = lambda v: f"{v:.3f}" if isinstance(v, float) else ("–" if v is None else str(v))  # noqa: E731
        lines.append(f"{label:<34}{cell(ours):>10}" + (f"{cell(theirs):>12}" if baseline else ""))
    s = report["summary"]
    lines.append(f"{'cases':<34}{s['n']:>10}  ({s['n_answerable']} answerable, {s['n_unanswerable']} not, {s['errors']} errors)")
    return "\n".join(lines)


def cmd_feedback(args: argparse.Namespace) -> int:
    """List the feedback records, or write them as a test set `rag eval` runs (no model is loaded)."""
    from rag.errors import ConfigError
    from rag.feedback import FeedbackStore, describe, export_cases, write_cases
    from rag.index import stored_source_hashes

    settings = _settings(args)
    records = FeedbackStore(settings.chroma.path).records()
    current = stored_source_hashes(settings)
    if args.action == "list":
        for record in records:
            print(describe(record, current))
        print(f"{len(records)} feedback records in {settings.chroma.path}")
        return 0
    if args.to is None:
        raise ConfigError("`rag feedback export` needs --to FILE, e.g. --to eval/feedback.yaml")
    export = export_cases(records)
    for record_id, why in export.skipped.items():
        print(f"#{record_id} skipped: {why}")
    if not export.cases:
        print("No feedback record makes a test case yet: nothing was written.")
        return 1
    write_cases(args.to, export.cases)
    print(f"{len(export.cases)} cases written to {args.to}; run them with `rag eval --testset {args.to}`")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Check the address and keys before loading models (a refusal comes at once), then serve."""
    from rag.server import api_keys, check_exposure, serve

    settings = _settings(args)
    check_exposure(settings.server, api_keys(settings.server))
    engine = _engine(settings)
    print(f"Serving on http://{settings.server.host}:{settings.server.port}/v1 (API docs: /docs)", file=sys.stderr, flush=True)
    serve(engine, settings)
    return 0


COMMANDS = {
    "ingest": cmd_ingest, "ask": cmd_ask, "chat": cmd_chat, "doctor": cmd_doctor, "eval": cmd_eval, "feedback": cmd_feedback,
    "serve": cmd_serve,
}


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
