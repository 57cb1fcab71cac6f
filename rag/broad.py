"""The context a broad question needs: whole documents, both sides of a comparison, the text around a step.

A lookup is answered from the few chunks that rank best; a summary from a ranking of 64-token
chunks reads like a list of unrelated quotes, and how-to steps are cut at a chunk's edge. So:

- summary, overview: the named document(s), or the one the topic finds ("the article about X"),
  read whole; a document longer than its share of the budget keeps its opening (where articles
  and manual pages say what they are about) for half of it and chunks spread evenly over the
  rest. "What the documents say about X" reads, from each of the documents X finds, only the
  chunks that hold X's words. Always in reading order;
- comparison: the best passages for each compared side (or each compared document), each given
  its share of the budget and answered on its own (a `Part`): asked to compare, the 1.5B model
  wrote "The first article mentions…" or the same sentence twice, once per side (1 of 5 seed
  comparisons correct), so each side gets its own short answer under its own label;
- how-to, explanation: the best hits, each widened by its neighbouring chunks (the sentence-window
  idea of LlamaIndex's PrevNextNodePostprocessor, which needs the chunks in a docstore; ours live
  in Chroma, so the neighbours come from `Index.document_chunks`).

Every passage is still a chunk of the index, so citations and their support states work as for lookups.
"""

from __future__ import annotations

import re
from typing import Sequence

from llama_index.core.schema import TextNode

from rag.citations import unwrap
from rag.kinds import Intent, Kind, topic_of, without_filler
from rag.retrieve import Filters, Part, Retrieval, Retriever, to_passage, count_tokens, term_coverage
from rag.schema import Passage

# How many documents a topic-found summary reads: one ("the article about X") unless the question asks for more.
_MAX_DOCUMENTS = 4
_WINDOW_HITS = 3  # how-to and explanation: hits widened by their neighbours
# A page's opening: its first chunks that hold a sentence (a menu or a table of contents holds none).
_OPENING_CHUNKS = 6
_PROSE = re.compile(r"[A-Za-z][^.!?\n]{40,}[.!?](?:\s|$)")
_DOCUMENT_MARGIN = 0.1  # ... from documents whose best hit is within this cosine similarity of the best

_SIDES = [
    re.compile(r"\bbetween (?P<a>.+?) and (?P<b>.+?)[?.!]*$", re.I),
    re.compile(r"^(?:what is |how is )?(?P<a>.+?)\s+(?:vs\.?|versus)\s+(?P<b>.+?)(?:[:?.!].*)?$", re.I),
    re.compile(r"\b(?:compare|contrast) (?P<a>.+?) (?:and|with|to) (?P<b>.+?)[?.!]*$", re.I),
    re.compile(r"\bhow (?:does|do|is|are) (?P<a>.+?) (?:differ from|compare (?:with|to)|different from) (?P<b>.+?)[?.!]*$", re.I),
    re.compile(r"\bhow (?:do|does) (?P<a>.+?) and (?P<b>.+?) (?:differ|compare)\b", re.I),
]


# Where the second side ends and the rest of the question goes on ("the EU | have done to help").
# A verb in -ed ends it too ("Pashinyan | described the prospects"), unless it follows an article ("the revised plan").
_SIDE_END = re.compile(r"\s+(?:have|has|had|did|do|does|is|are|was|were|on|in|about|regarding|when|for)\s.*$|,.*$"
                       r"|(?<!\bthe)(?<!\ban)(?<!\ba)\s+\w{3,}ed\s.*$", re.I)
_SIDE_START = re.compile(r"^(?:what|how|which|who)\s+", re.I)


def _holds_sentence(chunk: TextNode) -> bool:
    """Whether a chunk holds a sentence, however its file wraps lines (a menu or a table of contents holds none)."""
    return bool(_PROSE.search(unwrap(chunk.get_content())))


def comparison_sides(question: str) -> tuple[str, str] | None:
    """The two things a comparison question compares, when its wording names them."""
    for pattern in _SIDES:
        if match := pattern.search(question.strip()):
            return _SIDE_START.sub("", match["a"].strip(" ,")), _SIDE_END.sub("", match["b"].strip(" ,"))
    return None


def broad_context(intent: Intent, question: str, retriever: Retriever, budget: int, filters: Filters | None = None) -> Retrieval:
    """Numbered passages for a broad question, within `budget` tokens; best_score is the relevance gate's input."""
    by_document = intent.kind is Kind.COMPARISON and (intent.whole_corpus or len(intent.documents) > 1)
    if intent.kind in (Kind.SUMMARY, Kind.OVERVIEW) or by_document:
        passages, best = _documents(intent, retriever, budget, filters)
        return _numbered(passages, best, _document_parts(intent, passages, retriever) if by_document else [])
    if intent.kind is Kind.COMPARISON and (sides := comparison_sides(question)):
        return _numbered(*_sides_context(question, sides, retriever, budget, filters))
    return _numbered(*_windows(question, retriever, budget, filters))


def _document_parts(intent: Intent, passages: list[Passage], retriever: Retriever) -> list[Part]:
    """One part per compared document, labelled with its title; a single document is no comparison."""
    titles = retriever.index.titles()
    sources = list(dict.fromkeys(p.source for p in passages))
    about = f" about {intent.topic}" if intent.topic else ""
    return [Part(titles.get(s, s), f"What are the main points of these passages{about}?", [p for p in passages if p.source == s],
                 Kind.SUMMARY.value) for s in sources] if len(sources) > 1 else []


def _documents(intent: Intent, retriever: Retriever, budget: int, filters: Filters | None) -> tuple[list[Passage], float]:
    titles = retriever.index.titles()
    sources = [s for s in titles if not filters or not filters.sources or s in filters.sources]
    best = 1.0  # a document named, or every document: nothing to gate on
    if intent.documents:
        sources = [s for s in intent.documents if s in sources]
    elif intent.topic:
        found = retriever.retrieve(intent.topic, filters=filters)
        best = found.best_score
        ranked = list(dict.fromkeys(p.source for p in found.passages))
        sources = ranked[: _MAX_DOCUMENTS if intent.whole_corpus else 1]
    sources = sources[:_MAX_DOCUMENTS]
    share = budget // max(len(sources), 1)
    # "the article about X": X finds the article, which is then read as a whole; "what the documents
    # say about X": only the chunks about X, from each document
    focus = intent.topic if intent.whole_corpus else ""
    passages = [p for s in sources for p in _read(retriever.index.document_chunks(s), share, focus)]
    if not passages and sources:  # no chunk holds the words: the best document, read whole
        passages = _read(retriever.index.document_chunks(sources[0]), budget)
    return passages, best


def _read(chunks: Sequence[TextNode], budget: int, focus: str = "") -> list[Passage]:
    """A document's chunks in reading order within `budget`: with a focus, those holding its words
    (most first; none when no chunk does); otherwise all, or the opening for half the budget and
    chunks spread evenly over the rest, both of chunks that hold a sentence: a web page opens with
    its site's menu and its table of contents, which a summary read as its first points."""
    costs = [count_tokens(c.get_content()) for c in chunks]
    about = [i for i in range(len(chunks)) if term_coverage(focus, chunks[i].get_content()) > 0] if focus else []
    if focus and not about:
        return []
    keep: set[int] = set()
    used = 0
    whole = sum(costs) <= budget
    lead = 0 if about else budget if whole else budget // 2
    prose = [whole or _holds_sentence(c) for c in chunks] if not about else [True] * len(chunks)
    for i, cost in enumerate(costs):
        if used + cost > lead:
            break
        if prose[i]:
            keep.add(i)
            used += cost
    rest = [i for i in range(len(chunks)) if i not in keep]
    rest = [i for i in rest if prose[i]] or rest
    ranked = sorted(about, key=lambda i: -term_coverage(focus, chunks[i].get_content())) if about else _spread(rest)
    for i in ranked:
        if used + costs[i] <= budget:
            keep.add(i)
            used += costs[i]
    return [to_passage(chunks[i], 1.0) for i in sorted(keep)]


def side_queries(question: str, sides: tuple[str, str]) -> tuple[str, str]:
    """Each side searched with the rest of the question, without the other side: "Compare what the US
    and the EU have done to help" looks for "US have done help" and "EU have done help" ("US"
    alone is too short a query for the embeddings: best similarity 0.26 on the seeds)."""
    rest = _rest(question, sides)
    return without_filler(f"{sides[0]} {rest}"), without_filler(f"{sides[1]} {rest}")


def _rest(question: str, sides: tuple[str, str]) -> str:
    """The question's subject words besides the two sides ("have done help")."""
    for side in sides:
        question = question.replace(side, " ")
    return topic_of(question)


def _spread(indices: list[int]) -> list[int]:
    """Indices ordered so that any prefix samples the whole range evenly (midpoints first)."""
    order, spans = [], [(0, len(indices))]
    while spans:
        lo, hi = spans.pop(0)
        if lo < hi:
            mid = (lo + hi) // 2
            order.append(indices[mid])
            spans += [(lo, mid), (mid + 1, hi)]
    return order


def _sides_context(question: str, sides: tuple[str, str], retriever: Retriever, budget: int,
                   filters: Filters | None) -> tuple[list[Passage], float, list[Part]]:
    """Half the budget for each side, and a part each: first where the best page sets the two side
    by side (`_side_by_side`), then the passages the whole question finds that name the side, then
    those the side's own query finds. The gate: the question must find something, and so must one
    side at least (a side's query is short, so its similarity runs low)."""
    whole = retriever.retrieve(question, filters=filters)
    parts: list[Part] = []
    side_best = -1.0
    rest = _rest(question, sides)
    both = _side_by_side(sides, whole, retriever)
    for side, query in zip(sides, side_queries(question, sides)):
        found = retriever.retrieve(query, filters=filters)
        side_best = max(side_best, found.best_score)
        named = [p for p in whole.passages if term_coverage(side, p.text) == 1.0]
        ranked: dict[str, Passage] = {}
        for passage in [*both, *named, *found.passages]:
            ranked.setdefault(passage.node_id, passage)
        ask = f"What do the passages say about {side}" + (f" ({rest})" if rest else "") + "?"
        parts.append(Part(side[:1].upper() + side[1:], ask, _within(list(ranked.values()), budget // 2)))
    unique: dict[str, Passage] = {}
    for part in parts:  # a passage both sides found is one passage, under one number
        part.passages = [unique.setdefault(p.node_id, p) for p in part.passages]
    return list(unique.values()), min(whole.best_score, side_best), parts


def _side_by_side(sides: tuple[str, str], whole: Retrieval, retriever: Retriever, most: int = 2) -> list[Passage]:
    """The first chunks, in reading order, of the best hit's document that name both sides (at least
    half of each side's words: "WAL mode" is mostly "WAL" on its page).

    A page defines and contrasts what it covers near its top ("Multi-thread. In this mode… Serialized.
    In serialized mode… with no restriction"; "advantages and disadvantages to using WAL instead of a
    rollback journal"), and a ranking of 64-token chunks put those below the sentences that repeat the
    two names in passing (the SQLite pages: neither page's definition among either side's hits)."""
    if not whole.passages:
        return []
    best = whole.passages[0]
    chunks = retriever.index.document_chunks(best.source)
    named = [c for c in chunks if all(term_coverage(side, c.get_content()) >= 0.5 for side in sides)]
    return [to_passage(c, best.score) for c in named[:most]]


def _windows(question: str, retriever: Retriever, budget: int, filters: Filters | None) -> tuple[list[Passage], float]:
    """The best hits, each with its neighbouring chunks, from the documents that rank near the best;
    then, while the budget lasts, the best document's opening.

    A document well below the best one is left out: asked how to import a CSV file in the shell,
    the third hit (the CSV virtual table's page, 0.59 against the shell page's 0.75) was the one
    the model followed. A page's opening is where it says what it is about, often the answer itself
    ("open the database using the special filename :memory:"), which no window reached.
    """
    found = retriever.retrieve(question, filters=filters)
    best_of: dict[str, float] = {}
    for hit in found.passages:
        best_of[hit.source] = max(best_of.get(hit.source, -1.0), hit.score)
    top = max(best_of.values(), default=0.0)
    hits = [h for h in found.passages if best_of[h.source] >= top - _DOCUMENT_MARGIN][:_WINDOW_HITS]
    chunks_of = {source: retriever.index.document_chunks(source) for source in dict.fromkeys(h.source for h in hits)}
    chosen: dict[str, Passage] = {}
    share = budget // _WINDOW_HITS
    for hit in hits:
        chunks = chunks_of[hit.source]
        at = next((i for i, c in enumerate(chunks) if c.node_id == hit.node_id), None)
        window = [hit] if at is None else [to_passage(c, hit.score) for c in chunks[max(at - 1, 0): at + 2]]
        for passage in _within(window, share):
            chosen.setdefault(passage.node_id, passage)
    passages = list(chosen.values())
    if hits:
        room = budget - sum(count_tokens(p.text) for p in passages)
        opening = [c for c in chunks_of[hits[0].source][:_OPENING_CHUNKS] if _holds_sentence(c)]
        lead = [to_passage(c, best_of[hits[0].source]) for c in opening[:2] if c.node_id not in chosen]
        passages = _within(lead, room) + passages
    return passages, found.best_score


def _within(passages: Sequence[Passage], budget: int) -> list[Passage]:
    """The leading passages that fit `budget`. Unlike retrieve.fit_budget, which skips a passage that
    does not fit and tries the next, it stops there: a window around a hit stays contiguous."""
    kept, used = [], 0
    for passage in passages:
        cost = count_tokens(passage.text)
        if kept and used + cost > budget:
            break
        kept.append(passage)
        used += cost
    return kept


def _numbered(passages: list[Passage], best: float, parts: list[Part] | None = None) -> Retrieval:
    """Number the passages once: a part's prompt shows its passages under these same numbers."""
    for n, passage in enumerate(passages, start=1):
        passage.n = n
    return Retrieval(passages, best, parts or [])
