"""The small factory that builds the heavy objects once: embedder, index, retriever, LLM.

Every door (CLI, Streamlit, evaluation) asks questions through an Engine, so they all
get the same pipeline. Tests pass their own LLM or embedder instead of patching.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.llms import LLM

from rag.backends import build_embedding, build_llm, embed_label, generation_lock, llm_label
from rag.index import Index, IngestReport, ingest, open_index
from rag.retrieve import Retriever
from rag.schema import Backend
from rag.settings import Settings
from rag.verify import LEXICAL_NOTE, Judge, build_judge


@dataclass
class Engine:
    settings: Settings
    index: Index
    llm_factory: Callable[[], LLM]
    retriever: Retriever
    first_ingest: IngestReport | None = None
    judge_override: Judge | None = None
    _llm: LLM | None = None
    _llm_lock: threading.Lock = field(default_factory=threading.Lock)
    _judge: tuple[Judge | None, str] | None = None

    @property
    def llm(self) -> LLM:
        """The LLM, built on first use (loading a GGUF takes seconds; ingest never needs it)."""
        with self._llm_lock:
            if self._llm is None:
                self._llm = self.llm_factory()
            return self._llm

    @property
    def support_judge(self) -> tuple[Judge | None, str]:
        """The entailment judge of answer sentences (None: lexical check) and a note naming it."""
        if self._judge is None:
            check = self.settings.answer.support_check
            if self.judge_override is not None and check != "lexical":
                self._judge = self.judge_override, "entailment: the judge given to the engine"
            else:
                self._judge = build_judge(self.llm, check)
        return self._judge

    def fall_back_to_lexical(self, why: str) -> None:
        """The backend turned out to give no log-probabilities: later answers get the lexical check."""
        self._judge = None, f"{LEXICAL_NOTE} ({why})"

    @property
    def generation_lock(self) -> Any:
        """Queue calls to an in-process model (not thread-safe); a server takes them concurrently."""
        return generation_lock(self.llm)

    @property
    def embed_model(self) -> BaseEmbedding:
        return self.index.embed_model

    @property
    def backend(self) -> Backend:
        return Backend(llm=llm_label(self.settings.llm, self._llm), embedding=self.index.embed_label)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length embeddings of `texts`, for citation matching."""
        vectors = np.asarray(self.embed_model.get_text_embedding_batch(texts), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def ingest(self, progress: Callable[[int, int], None] | None = None, rebuild: bool = False) -> IngestReport:
        """Sync the index with the corpus folder; the retriever follows a rebuilt index."""
        self.index, report = ingest(self.index, progress=progress, rebuild_first=rebuild)
        self.retriever = Retriever(self.index)
        return report


def build_engine(
    settings: Settings,
    llm: LLM | None = None,
    embed_model: BaseEmbedding | None = None,
    auto_ingest: bool = True,
    judge: Judge | None = None,
) -> Engine:
    """Open the index (ingesting the corpus when the index is empty) and prepare the LLM."""
    logging.getLogger("rag").setLevel(settings.log_level)
    embedder = embed_model or build_embedding(settings.embed)
    index = open_index(settings, embedder, embed_label(settings.embed))
    index.check_embedding()
    engine = Engine(
        settings=settings,
        index=index,
        llm_factory=(lambda: llm) if llm is not None else (lambda: build_llm(settings.llm, settings.cache_dir)),
        retriever=Retriever(index),
        judge_override=judge,
    )
    if auto_ingest and index.count() == 0:
        engine.first_ingest = engine.ingest()
    return engine
