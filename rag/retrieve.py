"""From a question to a compact, numbered set of passages.

Vector search (LlamaIndex's VectorIndexRetriever over Chroma, optionally MMR) and BM25
(LlamaIndex's BM25Retriever) rank candidates; the rankings are fused by weighted
reciprocal rank. Near-duplicates are folded together so the prompt holds distinct facts,
and the rest is fitted to a token budget, because on a CPU prompt length is the latency.

The fusion is done here rather than with QueryFusionRetriever because the relevance gate
and the UI need each passage's cosine similarity, which the fused scores replace.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date

import numpy as np
from llama_index.core import QueryBundle, VectorStoreIndex
from llama_index.core.schema import BaseNode
from llama_index.core.utils import get_tokenizer
from llama_index.core.vector_stores import FilterCondition, FilterOperator, MetadataFilter, MetadataFilters
from llama_index.core.vector_stores.utils import metadata_dict_to_node

from rag.citations import content_terms
from rag.index import Index
from rag.outline import rebuild_text
from rag.schema import Passage

_WORDS = re.compile(r"\w+")


@dataclass
class Filters:
    """Restrict retrieval to some files and/or a date range (documents without a date are left out)."""

    sources: list[str] = field(default_factory=list)
    since: date | None = None
    until: date | None = None

    def __bool__(self) -> bool:
        return bool(self.sources or self.since or self.until)

    def metadata_filters(self) -> MetadataFilters | None:
        items: list[MetadataFilter] = []
        if self.sources:
            items.append(MetadataFilter(key="file_name", value=list(self.sources), operator=FilterOperator.IN))
        if self.since:
            items.append(MetadataFilter(key="date_num", value=_num(self.since), operator=FilterOperator.GTE))
        if self.until:
            items.append(MetadataFilter(key="date_num", value=_num(self.until), operator=FilterOperator.LTE))
        return MetadataFilters(filters=items, condition=FilterCondition.AND) if items else None

    def accepts(self, metadata: dict) -> bool:
        if self.sources and metadata.get("file_name") not in self.sources:
            return False
        stamp = metadata.get("date_num")
        if (self.since or self.until) and not isinstance(stamp, int):
            return False
        if self.since and stamp < _num(self.since):
            return False
        return not (self.until and stamp > _num(self.until))


def _num(day: date) -> int:
    return day.year * 10000 + day.month * 100 + day.day


def cosine_from_chroma(score: float | None) -> float:
    """ChromaVectorStore reports exp(-distance); with cosine space that is exp(cos - 1)."""
    if not score:
        return -1.0
    return 1.0 + math.log(score)


def count_tokens(text: str) -> int:
    return len(get_tokenizer()(text))


def joined_words(question: str, bm25) -> list[str]:  # noqa: ANN001 - BM25Retriever
    """Two neighbouring words of the question that the documents write as one ("back up" -> "backup",
    "data base" -> "database"): BM25 matches whole terms, so "How do I back up a database" found
    none of the backup page's "backup"s."""
    words = re.findall(r"[A-Za-z]+", question)
    vocabulary, stem = bm25.bm25.vocab_dict, bm25.stemmer.stemWord if bm25.stemmer else str
    return [a + b for a, b in zip(words, words[1:]) if len(a) > 1 and len(b) > 1 and stem((a + b).lower()) in vocabulary]


def reciprocal_rank_fusion(rankings: list[list[str]], weights: list[float], k: int = 60) -> dict[str, float]:
    """Weighted RRF: each list adds weight / (k + rank) to the ids it ranks."""
    fused: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, node_id in enumerate(ranking, start=1):
            fused[node_id] = fused.get(node_id, 0.0) + weight / (k + rank)
    return fused


def _shingles(text: str) -> set[str]:
    words = [w.lower() for w in _WORDS.findall(text)]
    return {" ".join(words[i : i + 3]) for i in range(max(1, len(words) - 2))}


def near_duplicate(a: str, b: str, threshold: float = 0.6) -> bool:
    """Two chunks say the same thing when most of their word trigrams are shared."""
    sa, sb = _shingles(a), _shingles(b)
    if not sa or not sb:
        return False
    return len(sa & sb) / min(len(sa), len(sb)) >= threshold


def term_coverage(question: str, text: str) -> float:
    """Share of the question's content words (stems) that a chunk holds."""
    wanted = content_terms(question)
    return len(wanted & content_terms(text)) / len(wanted) if wanted else 0.0


@dataclass
class Part:
    """Passages answered on their own, under a label: one side of a comparison."""

    label: str  # "The US", or a document's title
    question: str  # what the model is asked about this part
    passages: list[Passage]
    form: str = "comparison"  # the kind whose answer form it takes (rag.kinds.Kind's value)


@dataclass
class Retrieval:
    passages: list[Passage]
    best_score: float  # best cosine similarity among all candidates: the relevance gate
    parts: list[Part] = field(default_factory=list)  # empty: all passages answer the question at once


class Retriever:
    """Vector (+ BM25) retrieval over one index handle.

    BM25 comes from the index's current snapshot at each question, so an ingest by another
    process or replica is followed without a restart.
    """

    def __init__(self, index: Index) -> None:
        self.index = index
        self.settings = index.settings.retrieval
        self._vectors: VectorStoreIndex | None = None
        index.current()  # load BM25 now: the first question should not wait for it, and damage shows at start

    def _vector_index(self) -> VectorStoreIndex:
        """Over the index's vector store of the moment (a new one when another replica rebuilt the collection)."""
        if self._vectors is None or self._vectors.vector_store is not self.index.vector_store:
            self._vectors = VectorStoreIndex.from_vector_store(self.index.vector_store, embed_model=self.index.embed_model)
        return self._vectors

    def retrieve(self, question: str, top_k: int | None = None, filters: Filters | None = None, widened: bool = False) -> Retrieval:
        """Ranked, de-duplicated passages within the budget; `top_k` overrides the setting. `widened`:
        the best passages read on into their neighbours (`widen`), for a lookup's answer; broad
        questions read their own context (rag.broad) and rank documents with the plain chunks."""
        cfg = self.settings
        found = self.candidates(question, filters)
        passages = found.passages
        if widened and cfg.window_tokens and passages:
            passages = widen(passages, self.index.collection, cfg.window_tokens, cfg.window_passages)
        return Retrieval(fit_budget(passages, top_k or cfg.top_k, cfg.context_tokens), found.best_score)

    def candidates(self, question: str, filters: Filters | None = None) -> Retrieval:
        """Every ranked, de-duplicated candidate (up to `retrieval.candidates`), before the budget."""
        cfg = self.settings
        query_vector = np.asarray(self.index.embed_model.get_query_embedding(question), dtype=np.float32)
        query_vector /= max(float(np.linalg.norm(query_vector)), 1e-12)
        vector_hits = self._vector_hits(question, query_vector, filters)
        found = {n.node_id: (n, score) for n, score in vector_hits}
        rankings, weights = [[n.node_id for n, _ in vector_hits]], [cfg.vector_weight]
        bm25 = self.index.current().bm25
        if bm25 is not None:
            bm25_nodes = self._bm25_hits(bm25, question, filters)
            rankings.append([n.node_id for n in bm25_nodes])
            weights.append(cfg.bm25_weight)
            missing = [n for n in bm25_nodes if n.node_id not in found]
            for node, score in zip(missing, self._cosines(missing, query_vector)):
                found[node.node_id] = (node, score)
        fused = reciprocal_rank_fusion(rankings, weights, cfg.rrf_k)
        if cfg.rerank:
            fused = {i: s * (1 + term_coverage(question, found[i][0].get_content())) for i, s in fused.items()}
        order = sorted(fused, key=fused.get, reverse=True)[: cfg.candidates]
        passages = [to_passage(*found[node_id]) for node_id in order]
        best = max((p.score for p in passages), default=-1.0)
        # a keyword match with no semantic relation spends budget and can carry stray instructions
        passages = [p for p in passages if p.score >= cfg.min_passage_score or p.score == best]
        if cfg.dedup:
            passages = fold_duplicates(passages)
        return Retrieval(passages, best)

    def _vector_hits(self, question: str, query_vector: np.ndarray, filters: Filters | None) -> list[tuple[BaseNode, float]]:
        cfg = self.settings
        retriever = self._vector_index().as_retriever(
            similarity_top_k=cfg.candidates,
            filters=filters.metadata_filters() if filters else None,
            vector_store_query_mode="mmr" if cfg.mmr else "default",
            vector_store_kwargs={"mmr_threshold": cfg.mmr_threshold} if cfg.mmr else {},
        )
        hits = retriever.retrieve(QueryBundle(query_str=question, embedding=query_vector.tolist()))
        if cfg.mmr:  # MMR scores are not similarities: measure them
            return list(zip([h.node for h in hits], self._cosines([h.node for h in hits], query_vector)))
        return [(h.node, cosine_from_chroma(h.score)) for h in hits]

    def _bm25_hits(self, bm25, question: str, filters: Filters | None) -> list[BaseNode]:  # noqa: ANN001 - BM25Retriever
        hits = [h for h in bm25.retrieve(" ".join([question, *joined_words(question, bm25)])) if (h.score or 0) > 0]
        nodes = [h.node for h in hits if not filters or filters.accepts(h.node.metadata)]
        return nodes[: self.settings.candidates]

    def _cosines(self, nodes: list[BaseNode], query_vector: np.ndarray) -> list[float]:
        """Cosine similarity of chunks found by BM25 only, from their stored embeddings."""
        if not nodes:
            return []
        got = self.index.collection.get(ids=[n.node_id for n in nodes], include=["embeddings"])
        by_id = dict(zip(got["ids"], got["embeddings"]))
        scores = []
        for node in nodes:
            vector = np.asarray(by_id.get(node.node_id, []), dtype=np.float32)
            norm = float(np.linalg.norm(vector)) if vector.size else 0.0
            scores.append(float(vector @ query_vector) / norm if norm else -1.0)
        return scores


def to_passage(node: BaseNode, score: float) -> Passage:
    meta = node.metadata
    return Passage(
        n=0,
        node_id=node.node_id,
        source=str(meta.get("file_name", node.ref_doc_id or "?")),
        title=str(meta.get("title", "")),
        date=meta.get("date") or None,
        url=meta.get("url") or None,
        text=node.get_content(),
        score=round(score, 4),
        start=getattr(node, "start_char_idx", None),
        end=getattr(node, "end_char_idx", None),
        source_start=meta.get("source_start"),
        source_end=meta.get("source_end"),
    )


def widen(passages: list[Passage], collection, tokens: int, count: int) -> list[Passage]:  # noqa: ANN001 - a Chroma collection
    """The `count` best passages each read on into the chunks after it (then before it) up to
    `tokens`; the passages inside a window are dropped from the ranking.

    A 64-token chunk cuts a list or a definition after its first line: "The trailers are:" was
    retrieved and the trailers were in the next chunk, which ranked too low for the budget.
    LlamaIndex's PrevNextNodePostprocessor adds neighbours from a docstore, which here holds the
    documents, not the chunks (they live in Chroma), and adds whole nodes with no token budget; the
    chunk ids are `<document id>::<n>` (rag.index), so the neighbours are fetched by id.

    Fitted on the tuning corpora (Git's guides, the seeds, SQLite: two passages of 96 tokens beat one
    of 128 or 160, three of 96 or 110 and four or six of 80) and reported on the left-out man pages and
    gnuplot manual, same 250-token budget: lookups whose passages hold the answer 41 -> 45 of 64 and
    28 -> 29 of 45 with the embedded model (bench/cross_corpus.py, 2026-12-08)."""
    ranked = list(passages)
    for k in range(count):
        if k >= len(ranked):
            break
        window = _window(ranked[k], collection, tokens)
        ranked = [*ranked[:k], window, *(p for p in ranked[k + 1:] if not overlaps(p, window))]
    return ranked


def _window(best: Passage, collection, tokens: int) -> Passage:  # noqa: ANN001
    """`best` and the chunks next to it, the following ones first, while `tokens` allow and no gap
    opens, as one passage at the document's own offsets (joined by rag.outline.rebuild_text)."""
    doc_id, _, number = best.node_id.rpartition("::")
    if not doc_id or not number.isdigit():
        return best
    n = int(number)
    got = collection.get(ids=[f"{doc_id}::{i}" for i in range(max(0, n - 4), n + 5)], include=["documents", "metadatas"])
    near = {int(i.rpartition("::")[2]): metadata_dict_to_node(m, text=t) for i, t, m in zip(got["ids"], got["documents"], got["metadatas"])}
    if n not in near or any(node.start_char_idx is None for node in near.values()):
        return best
    chosen, used = [n], count_tokens(best.text)
    for i in sorted(set(near) - {n}, key=lambda i: (i < n, abs(i - n))):
        cost = count_tokens(near[i].get_content())
        if used + cost > tokens or not all(j in chosen for j in range(min(i, n) + 1, max(i, n))):
            continue
        chosen.append(i)
        used += cost
    if len(chosen) == 1:
        return best
    nodes = [near[i] for i in sorted(chosen)]
    start = nodes[0].start_char_idx
    text = rebuild_text(nodes, start)
    return best.model_copy(update={"node_id": f"{best.node_id}+{len(nodes)}", "text": text, "start": start, "end": start + len(text),
                                   "source_start": nodes[0].metadata.get("source_start"),
                                   "source_end": nodes[-1].metadata.get("source_end")})


def overlaps(a: Passage, b: Passage) -> bool:
    if a.source != b.source or None in (a.start, a.end, b.start, b.end):
        return False
    return a.start < b.end and b.start < a.end


def fold_duplicates(passages: list[Passage]) -> list[Passage]:
    """Keep the best-ranked of near-duplicate chunks; the others' sources stay listed in `also_in`."""
    kept: list[Passage] = []
    for passage in passages:
        twin = next((k for k in kept if near_duplicate(k.text, passage.text)), None)
        if twin is None:
            kept.append(passage)
        elif passage.source != twin.source and passage.source not in twin.also_in:
            twin.also_in.append(passage.source)
    return kept


def fit_budget(passages: list[Passage], top_k: int, budget: int) -> list[Passage]:
    """The best passages that fit the token budget (always at least one), numbered from 1."""
    chosen: list[Passage] = []
    used = 0
    for passage in passages:
        if len(chosen) >= top_k:
            break
        cost = count_tokens(passage.text)
        if chosen and used + cost > budget:
            continue
        chosen.append(passage)
        used += cost
    for n, passage in enumerate(chosen, start=1):
        passage.n = n
    return chosen
