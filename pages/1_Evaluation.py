"""Evaluation page: run a test set, or the cases the chat's feedback makes, with progress, and show the report."""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components

from rag.errors import RagError
from rag.evaluate import Case, evaluate, load_testset
from rag.feedback import FeedbackStore, cases_yaml, export_cases, table as feedback_table
from rag.report import render_html
from rag.settings import load_settings
from rag.ui import error_box, escape_md, get_engine, guarded

st.set_page_config(page_title="Evaluation", page_icon="📏", layout="wide")
st.header("📏 Evaluation")
st.caption("Runs a test set (YAML list or JSONL, see eval/testset.yaml) through the same pipeline as the chat and scores the answers.")

try:
    settings = load_settings()
    engine = get_engine(settings)
except RagError as exc:
    error_box(exc, "Fix the problem above, then reload the page.")
    st.stop()

uploaded = st.file_uploader("Test set", type=["yaml", "yml", "jsonl"], help=f"Default: {settings.eval.testset}")
limit = st.number_input("Cases (0 = all)", min_value=0, value=0, step=1)


def run(cases: list[Case], name: str) -> None:
    """Run cases with a progress bar; the report is kept for the page's next draws."""
    bar = st.progress(0.0, text=f"0 of {len(cases)} cases")

    def progress(done: int, total: int, result) -> None:  # noqa: ANN001
        bar.progress(done / total, text=f"{done} of {total} cases · {result.id}: {'pass' if result.passed else 'FAIL'}")

    report = evaluate(engine, cases, progress)
    report["testset"] = name
    st.session_state.eval_report = report


def draw_feedback() -> None:
    """The 👍/👎 given in the chat, as `rag feedback list` shows them, and the cases they make."""
    st.subheader("Feedback from the chat")
    records = FeedbackStore(settings.chroma.path).records()
    if not records:
        st.caption("No 👍/👎 yet. Rate answers in the chat; each rating becomes a test case here.")
        return
    st.dataframe(feedback_table(records, engine.index.source_hashes()), hide_index=True, use_container_width=True)
    export = export_cases(records)
    st.caption(escape_md(f"{len(records)} records · {len(export.cases)} make test cases · "
                         f"{len(export.skipped)} make none (the reason is in their notes)"))
    if not export.cases:
        return
    left, right = st.columns(2)
    left.download_button("Download as a test set (YAML)", cases_yaml(export.cases), file_name="feedback.yaml",
                         mime="application/yaml", help="The file `rag feedback export --to` writes; `rag eval --testset` runs it.")
    if right.button("Run the feedback cases"):
        guarded(lambda: run(export.cases, "feedback from the chat"))


if st.button("Run evaluation", type="primary"):
    try:
        if uploaded is not None:
            suffix = Path(uploaded.name).suffix
            with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as handle:
                handle.write(uploaded.getvalue())
            path = Path(handle.name)
        else:
            path = settings.eval.testset
        cases = load_testset(path)
        run(cases[: int(limit)] if limit else cases, uploaded.name if uploaded is not None else str(path))
    except RagError as exc:
        error_box(exc)

draw_feedback()

report = st.session_state.get("eval_report")
if report:
    summary = report["summary"]
    cols = st.columns(5)
    for col, (key, label) in zip(cols, [("correct", "Correct"), ("refusal_accuracy", "Refusal accuracy"),
                                        ("hit_rate", "Hit rate"), ("citation_validity", "Citation validity"),
                                        ("latency_p50_s", "Latency p50 (s)")]):
        value = summary.get(key)
        col.metric(label, "–" if value is None else f"{value:.2f}")
    page = render_html(report)
    st.download_button("Download the HTML report", page, file_name="evaluation.html", mime="text/html")
    components.html(page, height=1400, scrolling=True)
