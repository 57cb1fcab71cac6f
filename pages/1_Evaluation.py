"""Evaluation page: run a test set through the pipeline with progress and show the report."""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components

from rag.errors import RagError
from rag.evaluate import evaluate, load_testset
from rag.report import render_html
from rag.settings import load_settings
from rag.ui import error_box, get_engine

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
        cases = cases[: int(limit)] if limit else cases
        bar = st.progress(0.0, text=f"0 of {len(cases)} cases")

        def progress(done: int, total: int, result) -> None:  # noqa: ANN001
            bar.progress(done / total, text=f"{done} of {total} cases · {result.id}: {'pass' if result.passed else 'FAIL'}")

        report = evaluate(engine, cases, progress)
        report["testset"] = uploaded.name if uploaded is not None else str(path)
        st.session_state.eval_report = report
    except RagError as exc:
        error_box(exc)

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
