"""The evaluation report as one self-contained HTML file: summary, plots, failing cases.

Plots are matplotlib PNGs inlined as data URIs, so the file opens anywhere, offline.
Every answer, reference and snippet is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime, timezone

METRICS: list[tuple[str, str, str]] = [
    ("correct", "Correct", "answerable cases answered (not refused) with every expected keyword"),
    ("correct_and_supported", "Correct, all ✅", "answerable cases answered correctly with every shown sentence ✅ (the support check found it stated)"),
    ("refusal_accuracy", "Refusal accuracy", "unanswerable cases refused"),
    ("false_refusals", "False refusals", "answerable cases refused (lower is better)"),
    ("hit_rate", "Hit rate", "an expected source among the retrieved chunks"),
    ("mrr", "MRR", "mean reciprocal rank of the first expected source"),
    ("context_recall", "Context recall", "answerable cases whose passages (the prompt) hold every expected keyword"),
    ("citation_validity", "Citation validity", "citations whose sentence passed the support check and whose quote stands at its place in the file"),
    ("sentence_support", "Sentences supported", "shown answer sentences the support check found stated by their quotes"),
    ("sentences_quoted", "Sentences quoted", "broad answers: shown sentences put in the documents' own words because the draft's wording was not stated (rag.citations.quote_in_place)"),
    ("sentences_left_out", "Sentences left out", "broad answers: draft sentences left out because their quotes were already shown by another sentence and did not state them"),
    ("wrong_but_verified", "Wrong but all ✅", "cases answered wrongly (or not refused) with every sentence shown ✅ (lower is better)"),
    ("verifier_precision", "Verifier precision", "labelled support pairs: share of pairs judged supported that are supported"),
    ("verifier_recall", "Verifier recall", "labelled support pairs: share of supported pairs judged supported"),
    ("key_point_coverage", "Key-point coverage", "broad questions: share of their key points the answer makes"),
    ("kind_accuracy", "Question-kind accuracy", "cases whose kind (lookup, summary, …) the classifier got right"),
    ("source_precision", "Source precision", "cited sources that are expected sources"),
    ("semantic_similarity", "Semantic similarity", "mean embedding cosine of answer and reference"),
    ("judge_faithfulness", "Faithfulness (LLM-as-judge)", "answers the judge model found supported by the passages"),
    ("judge_correctness", "Correctness (LLM-as-judge, 1-5)", "the judge model's mean score against the reference"),
    ("latency_p50_s", "Latency p50 (s)", "median time to the full answer"),
    ("latency_p95_s", "Latency p95 (s)", "95th percentile of the time to the full answer"),
    ("ttft_p50_s", "First token p50 (s)", "median time to the first streamed token"),
    ("prompt_tokens_p50", "Prompt tokens p50", "median length of the prompt sent to the LLM"),
]
RATES = ["correct", "correct_and_supported", "refusal_accuracy", "false_refusals", "hit_rate", "mrr", "context_recall", "citation_validity", "source_precision", "semantic_similarity"]


def _fmt(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def _png(fig) -> str:  # noqa: ANN001
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def plot_metrics(report: dict, baseline: dict | None) -> str:
    """Grouped bars of the rate metrics, ours next to the baseline's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m for m in RATES if report["summary"].get(m) is not None or (baseline and baseline["summary"].get(m) is not None)]
    fig, ax = plt.subplots(figsize=(8, 3.4))
    width = 0.38 if baseline else 0.6
    xs = range(len(names))
    ours = [report["summary"].get(m) or 0 for m in names]
    ax.bar([x - (width / 2 if baseline else 0) for x in xs], ours, width, label=_name(report), color="#2b6cb0")
    if baseline:
        theirs = [baseline["summary"].get(m) or 0 for m in names]
        ax.bar([x + width / 2 for x in xs], theirs, width, label=_name(baseline), color="#a0aec0")
    ax.set_xticks(list(xs), [n.replace("_", " ") for n in names], rotation=25, ha="right")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("Answer, retrieval and citation metrics")
    png = _png(fig)
    plt.close(fig)
    return png


def plot_latency(report: dict, baseline: dict | None) -> str:
    """Distribution of per-case latency (full answer) and time to first token."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3))
    series = [(report, "#2b6cb0")] + ([(baseline, "#a0aec0")] if baseline else [])
    for rep, color in series:
        total = [c["latency_s"] for c in rep["cases"] if c.get("error") is None]
        ax.hist(total, bins=20, alpha=0.6, color=color, label=f"{_name(rep)}: full answer")
        first = [c["first_token_s"] for c in rep["cases"] if c.get("first_token_s") is not None]
        if first:
            ax.hist(first, bins=20, alpha=0.6, histtype="step", linewidth=2, color=color, label=f"{_name(rep)}: first token")
    ax.set_xlabel("seconds")
    ax.set_ylabel("cases")
    ax.legend(fontsize=8)
    ax.set_title("Latency per case")
    png = _png(fig)
    plt.close(fig)
    return png


def _name(report: dict) -> str:
    return report.get("pipeline", {}).get("name", "rag")


def _summary_table(report: dict, baseline: dict | None) -> str:
    head = f"<tr><th>Metric</th><th>{html.escape(_name(report))}</th>"
    head += f"<th>{html.escape(_name(baseline))}</th>" if baseline else ""
    head += "<th>What it measures</th></tr>"
    rows = [head]
    for key, label, meaning in METRICS:
        ours = report["summary"].get(key)
        theirs = baseline["summary"].get(key) if baseline else None
        if ours is None and theirs is None:
            continue
        row = f"<tr><td>{html.escape(label)}</td><td class=num>{_fmt(ours)}</td>"
        row += f"<td class=num>{_fmt(theirs)}</td>" if baseline else ""
        rows.append(row + f"<td class=muted>{html.escape(meaning)}</td></tr>")
    counts = report["summary"]
    rows.append(f"<tr><td>Cases</td><td class=num>{counts['n']} ({counts['n_answerable']} answerable, {counts['n_unanswerable']} not; {counts['errors']} errors)</td>"
                + (f"<td class=num>{baseline['summary']['n']}</td>" if baseline else "") + "<td></td></tr>")
    return "<table>" + "".join(rows) + "</table>"


KIND_COLUMNS = [("n", "cases"), ("answered", "answered"), ("correct", "correct"), ("correct_and_supported", "correct, all ✅"),
                ("sentences_quoted", "sentences quoted"), ("sentences_left_out", "sentences left out"),
                ("refusal_accuracy", "refused when unanswerable"), ("ttft_p50_s", "first token p50 (s)"), ("latency_p50_s", "total p50 (s)")]


def kind_rows(report: dict) -> list[list[str]]:
    """The per-kind table (rag.evaluate.by_kind) as text cells, shared by the HTML and the CLI."""
    table = report["summary"].get("by_kind") or {}
    return [[kind] + [_fmt(values.get(key)) for key, _ in KIND_COLUMNS] for kind, values in table.items()]


def _kind_table(report: dict) -> str:
    head = "<tr><th>kind</th>" + "".join(f"<th>{html.escape(label)}</th>" for _, label in KIND_COLUMNS) + "</tr>"
    body = "".join("<tr><td>" + html.escape(row[0]) + "</td>" + "".join(f"<td class=num>{c}</td>" for c in row[1:]) + "</tr>"
                   for row in kind_rows(report))
    return f"<table>{head}{body}</table>"


def _by_kind(cases: list[dict]) -> str:
    """All cases, one folded section per question kind."""
    groups: dict[str, list[dict]] = {}
    for case in cases:
        groups.setdefault(case.get("kind", "lookup"), []).append(case)
    return "".join(f"<details><summary>{html.escape(kind)}: {len(group)} case{'s' * (len(group) != 1)}</summary>{_case_rows(group)}</details>"
                   for kind, group in groups.items())


def _sentences(case: dict) -> str:
    """Each answer sentence (of the shown answer, or of a withheld draft) with its state, support and quotes."""
    if not case.get("sentences"):
        return "<span class=muted>no sentences checked</span>"
    items = []
    for c in case["sentences"]:
        mark = "✅" if c.get("supported") else "⚠️"
        support = f" <span class=muted>support {c['support']:.2f}</span>" if c.get("support") is not None else ""
        why = f" <span class=muted>— {html.escape(c['reason'])}</span>" if c.get("reason") else ""
        if c.get("quoted_for"):
            why += f" <span class=muted>— quoted for the draft's “{html.escape(c['quoted_for'])}”</span>"
        cites = "".join(f"[{n}]" for n in c.get("citations", []))
        quotes = "".join(f"<div class=quote>{cites} “{html.escape(q)}”</div>" for q in c.get("quotes", []))
        items.append(f"<li>{mark} {html.escape(c['text'])}{support}{why}{quotes}</li>")
    items += [f"<li>✂️ <s>{html.escape(t)}</s> <span class=muted>— left out: its quotes are shown by another sentence</span></li>"
              for t in case.get("left_out", [])]
    check = f"<div class=muted>check: {html.escape(case.get('support_check') or '?')}</div>"
    return "<ul>" + "".join(items) + "</ul>" + check


def _case_rows(cases: list[dict]) -> str:
    rows = ["<tr><th>Case</th><th>Answer</th><th>Reference</th><th>Why it failed</th><th>Sentences: state, support, quotes</th></tr>"]
    for case in cases:
        why = []
        if case.get("error"):
            why.append(f"error: {case['error']}")
        elif case["answerable"] and case["refused"]:
            why.append(f"refused ({case.get('refusal_reason') or 'no reason'})")
        elif not case["answerable"] and not case["refused"]:
            why.append("answered a question the documents cannot answer")
        if case.get("wrong_but_verified"):
            why.append("wrong, yet every sentence shown ✅")
        if case.get("keywords_missing") and not case["refused"]:
            why.append("missing: " + ", ".join(case["keywords_missing"]))
        if case.get("key_points_missing") and not case["refused"]:
            why.append("key points missing: " + ", ".join(case["key_points_missing"]))
        if case.get("kind_found") and case.get("kind") and case["kind_found"] != case["kind"]:
            why.append(f"taken for a {case['kind_found']} question, labelled {case['kind']}")
        draft = f"<div class=muted>draft: {html.escape(case['draft'])}</div>" if case.get("draft") else ""
        rows.append(
            f"<tr><td><b>{html.escape(case['id'])}</b><br>{html.escape(case['question'])}</td>"
            f"<td>{html.escape(case['answer'])}{draft}</td><td>{html.escape(case['reference_answer'])}</td>"
            f"<td>{html.escape('; '.join(why))}</td><td>{_sentences(case)}</td></tr>"
        )
    return "<table class=cases>" + "".join(rows) + "</table>"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #1a202c; }
table { border-collapse: collapse; width: 100%; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #e2e8f0; padding: 0.35rem 0.5rem; vertical-align: top; text-align: left; }
th { background: #f7fafc; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.muted { color: #718096; font-size: 0.85rem; } img { max-width: 100%; } ul { margin: 0; padding-left: 1.1rem; }
table.cases td { max-width: 22rem; } .quote { color: #4a5568; font-size: 0.8rem; margin-left: 0.8rem; }
"""


def render_html(report: dict, baseline: dict | None = None, title: str = "Evaluation report") -> str:
    """The whole report; `baseline` (another report) is shown side by side when given."""
    failing = [c for c in report["cases"] if not c.get("passed")]
    backend = report.get("pipeline", {}).get("backend", {})
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class=muted>{when} · test set: {html.escape(str(report.get('testset', '?')))} · "
        f"LLM: {html.escape(str(backend.get('llm', '?')))} · embeddings: {html.escape(str(backend.get('embedding', '?')))}</p>",
        "<h2>Summary</h2>", _summary_table(report, baseline),
        "<h2>Plots</h2>",
        f"<img alt='metrics' src='{plot_metrics(report, baseline)}'>",
        f"<img alt='latency' src='{plot_latency(report, baseline)}'>",
        f"<h2>Failing cases ({len(failing)} of {len(report['cases'])})</h2>",
        _case_rows(failing) if failing else "<p>None.</p>",
        "<h2>By kind of question</h2>", _kind_table(report),
        f"<h2>All {len(report['cases'])} cases, by kind</h2>", _by_kind(report["cases"]),
        "</body></html>",
    ]
    return "\n".join(parts)
