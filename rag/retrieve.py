"""From a question to a compact, numbered set of passages.

Vector search (LlamaIndex's VectorIndexRetriever over the Chroma collection) fetches
candidates; near-duplicates are folded together so the prompt holds distinct facts, and
the rest is fitted to a token budget, because on a CPU prompt length is the latency.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from llama_index.core import VectorStoreIndex
from llama_index.core.schema import NodeWithScore
from llama_index.core.utils import get_tokenizer

from rag.index import Index
from rag.schema import Passage

_WORDS = re.compile(r"\w+")


def cosine_from_chroma(score: float | None) -> float:
    """ChromaVectorStore reports exp(-distance); with cosine space that is exp(cos - 1)."""
    if not score:
        return -1.0
    return 1.0 + math.log(score)


def count_tokens(text: str) -> int:
    return len(get_tokenizer()(text))


def _shingles(text: str) -> set[str]:
    words = [w.lower() for w in _WORDS.findall(text)]
    return {" ".join(words[i : i + 3]) for i in range(max(1, len(words) - 2))}


def near_duplicate(a: str, b: str, threshold: float = 0.6) -> bool:
    """Two chunks say the same thing when most of their word trigrams are shared."""
    sa, sb = _shingles(a), _shingles(b)
    if not sa or not sb:
        return False
    return len(sa & sb) / min(len(sa), len(sb)) >= threshold


@dataclass
class Retrieval:
    passages: list[Passage]
    best_score: float


class Retriever:
    """Holds the LlamaIndex retriever for an index; one per index handle."""

    def __init__(self, index: Index) -> None:
        self.index = index
        self.settings = index.settings.retrieval
        vector_index = VectorStoreIndex.from_vector_store(index.vector_store, embed_model=index.embed_model)
        self._retriever = vector_index.as_retriever(similarity_top_k=self.settings.candidates)

    def retrieve(self, question: str, top_k: int | None = None) -> Retrieval:
        """Ranked, de-duplicated passages within the budget; `top_k` overrides the setting."""
        hits = self._retriever.retrieve(question)
        passages = [_to_passage(hit) for hit in hits]
        passages.sort(key=lambda p: p.score, reverse=True)
        best = passages[0].score if passages else -1.0
        limit = top_k or self.settings.top_k
        return Retrieval(fit_budget(fold_duplicates(passages), limit, self.settings.context_tokens), best)


def _to_passage(hit: NodeWithScore) -> Passage:
    node = hit.node
    meta = node.metadata
    return Passage(
        n=0,
        node_id=node.node_id,
        source=str(meta.get("file_name", node.ref_doc_id or "?")),
        title=str(meta.get("title", "")),
        date=meta.get("date") or None,
        url=meta.get("url") or None,
        text=node.get_content(),
        score=round(cosine_from_chroma(hit.score), 4),
        start=getattr(node, "start_char_idx", None),
        end=getattr(node, "end_char_idx", None),
        source_start=meta.get("source_start"),
        source_end=meta.get("source_end"),
    )


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
