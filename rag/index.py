"""The index: a Chroma collection (embedded or server) plus a docstore, kept in sync with the corpus.

Ingestion runs LlamaIndex's IngestionPipeline (SentenceSplitter -> span mapping -> embedding
-> ChromaVectorStore) with a docstore, so unchanged files are skipped, changed files are
replaced and deleted files are removed. The docstore is a JSON file in embedded mode and a
second Chroma collection in http mode, so every replica over one Chroma server plans the
same incremental ingest.

An ingest that changed something ends by writing a new index version into the collection's
metadata. Each process checks it (at most every `chroma.refresh_s`) and then reloads what it
keeps besides the live vectors: BM25 (rebuilt from the collection's chunks; Chroma 1.5's
own sparse/BM25 index is refused by a local server) and the document records.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import re
import shutil
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import BaseNode, Document, TextNode, TransformComponent
from llama_index.core.vector_stores.utils import metadata_dict_to_node
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.core.storage.docstore.keyval_docstore import KVDocumentStore
from llama_index.core.storage.kvstore.types import DEFAULT_BATCH_SIZE, DEFAULT_COLLECTION, BaseKVStore
from llama_index.vector_stores.chroma import ChromaVectorStore
from pydantic import PrivateAttr

from rag.corpus import LoadedCorpus, OffsetMap, Skipped, load_corpus
from rag.errors import IndexStateError
from rag.settings import Settings

BATCH_DOCS = 16  # documents per pipeline run: progress steps and crash-safe checkpoints
PAGE = 5000  # records per Chroma read or delete: SQLite caps the variables of one statement
OPENING_LINES = 5  # a document's first lines, where its byline stands
VERSION_KEY = "index_version"  # collection metadata: changes at the end of every ingest that changed something


def _client(settings: Settings) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaClientSettings

    client_settings = ChromaClientSettings(anonymized_telemetry=False, allow_reset=False)
    cfg = settings.chroma
    if cfg.mode == "http":
        headers = {"Authorization": f"Bearer {cfg.auth_token.get_secret_value()}"} if cfg.auth_token else None
        try:
            return chromadb.HttpClient(host=cfg.host, port=cfg.port, headers=headers, settings=client_settings)
        except Exception as exc:  # chromadb raises ValueError/ConnectionError variants
            raise IndexStateError(
                f"Cannot reach the Chroma server at http://{cfg.host}:{cfg.port} ({exc}). Start it with "
                f"`chroma run --host {cfg.host} --port {cfg.port} --path DIR`, or set chroma.mode = \"embedded\"."
            ) from exc
    _forget_deleted_index(cfg.path)
    cfg.path.mkdir(parents=True, exist_ok=True)
    try:
        return chromadb.PersistentClient(path=str(cfg.path), settings=client_settings)
    except Exception as exc:  # a damaged sqlite file raises chromadb's internal errors
        raise IndexStateError(f"The index at {cfg.path} cannot be opened ({exc}). Rebuild it with `rag ingest --rebuild`.") from exc


def _forget_deleted_index(path: Path) -> None:
    """Drop Chroma's cached client for `path` when its database file is gone (the folder was deleted).

    Chroma keeps one client per folder for the life of the process, and that client goes on
    reading the deleted file through its open handles, or opens a new empty one that has no
    tables ("no such table: embeddings"). Chroma has no public call to forget one folder's
    client (`clear_system_cache` forgets every folder's, breaking other live clients).
    """
    from chromadb.api.shared_system_client import SharedSystemClient

    if (path / "chroma.sqlite3").exists():
        return
    key = str(path)
    system = SharedSystemClient._identifier_to_system.pop(key, None)  # noqa: SLF001
    SharedSystemClient._identifier_to_refcount.pop(key, None)  # noqa: SLF001
    if system is not None:
        with suppress(Exception):  # stopping a client whose files are gone may fail; it is discarded either way
            system.stop()


def _fingerprint(settings: Settings, embed_label: str) -> dict[str, str]:
    return {
        "embed_model": embed_label,
        "chunking": f"sentence:{settings.chunking.chunk_size}/{settings.chunking.chunk_overlap}",
    }


class BatchedChromaVectorStore(ChromaVectorStore):
    """ChromaVectorStore whose `add` keeps within the Chroma client's batch limit.

    llama-index-vector-stores-chroma 0.6.0 sends up to 41,665 records in one call, but an
    embedded Chroma 1.5 takes at most 5,461 (`client.get_max_batch_size()`): one document of
    more chunks than that (a 1 MB text PDF is ~5,800) failed to ingest or upload.
    """

    max_batch: int = 5000

    def add(self, nodes: list[BaseNode], **add_kwargs: Any) -> list[str]:
        ids: list[str] = []
        for start in range(0, len(nodes), self.max_batch):
            ids += super().add(nodes[start : start + self.max_batch], **add_kwargs)
        return ids


def paged_get(collection: Any, include: list[str], where: dict | None = None) -> dict[str, list]:
    """Every matching record's ids and fields, read in pages: one unbounded `get` fails past ~30k
    chunks ("too many SQL variables", measured at 135k chunks)."""
    got: dict[str, list] = {name: [] for name in ["ids", *include]}
    offset = 0
    while True:
        page = collection.get(where=where, include=include, limit=PAGE, offset=offset)
        for name in got:
            got[name].extend(page[name] or [])
        if len(page["ids"]) < PAGE:
            return got
        offset += PAGE


class ChromaKVStore(BaseKVStore):
    """LlamaIndex's key-value store interface over a Chroma collection: the docstore in http mode.

    LlamaIndex ships KV stores for Redis, MongoDB, Postgres and others, none for Chroma, the
    one server every replica here already shares. One record per key, its value the record's
    document as JSON. A collection without an embedding function still needs an embedding per
    record (without one Chroma reaches for its default model): each carries the vector [0.0].
    """

    def __init__(self, collection: Any) -> None:
        self._collection = collection

    def put(self, key: str, val: dict, collection: str = DEFAULT_COLLECTION) -> None:
        self.put_all([(key, val)], collection)

    def put_all(self, kv_pairs: list[tuple[str, dict]], collection: str = DEFAULT_COLLECTION,
                batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        for start in range(0, len(kv_pairs), PAGE):
            page = kv_pairs[start : start + PAGE]
            self._collection.upsert(ids=[f"{collection}/{key}" for key, _ in page], documents=[json.dumps(v) for _, v in page],
                                    metadatas=[{"kv": collection}] * len(page), embeddings=[[0.0]] * len(page))

    def get(self, key: str, collection: str = DEFAULT_COLLECTION) -> dict | None:
        got = self._collection.get(ids=[f"{collection}/{key}"], include=["documents"])
        return json.loads(got["documents"][0]) if got["ids"] else None

    def get_all(self, collection: str = DEFAULT_COLLECTION) -> dict[str, dict]:
        got = paged_get(self._collection, ["documents"], where={"kv": collection})
        return {i.removeprefix(f"{collection}/"): json.loads(doc) for i, doc in zip(got["ids"], got["documents"])}

    def delete(self, key: str, collection: str = DEFAULT_COLLECTION) -> bool:
        found = bool(self._collection.get(ids=[f"{collection}/{key}"], include=[])["ids"])
        self._collection.delete(ids=[f"{collection}/{key}"])
        return found

    async def aput(self, key: str, val: dict, collection: str = DEFAULT_COLLECTION) -> None:
        self.put(key, val, collection)

    async def aget(self, key: str, collection: str = DEFAULT_COLLECTION) -> dict | None:
        return self.get(key, collection)

    async def aget_all(self, collection: str = DEFAULT_COLLECTION) -> dict[str, dict]:
        return self.get_all(collection)

    async def adelete(self, key: str, collection: str = DEFAULT_COLLECTION) -> bool:
        return self.delete(key, collection)


@dataclass(frozen=True)
class Snapshot:
    """What retrieval keeps besides the live vectors, as of one index version."""

    version: str
    bm25: Any  # BM25Retriever | None (vector mode or an empty index)
    documents: dict[str, Document]  # doc id -> the document record (metadata, content hash)


@dataclass
class Index:
    """Handles on the collection, its vector store and the docstore; built once, passed around."""

    settings: Settings
    embed_model: BaseEmbedding
    embed_label: str
    client: Any
    collection: Any
    vector_store: BatchedChromaVectorStore
    docstore: KVDocumentStore
    docstore_path: Path
    _snapshot: Snapshot | None = None
    _checked: float = -math.inf  # time.monotonic() of the last version check
    _refreshing: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        return int(self.collection.count())

    def built_with(self) -> dict[str, str]:
        meta = self.collection.metadata or {}
        return {k: str(meta[k]) for k in ("embed_model", "chunking") if k in meta}

    def check_embedding(self) -> None:
        """Querying with another embedding model than the index's gives garbage: refuse clearly."""
        recorded = self.built_with().get("embed_model")
        if recorded and recorded != self.embed_label and self.count():
            raise IndexStateError(
                f"The index was built with embedding model '{recorded}' but '{self.embed_label}' is configured. "
                "Re-index with `rag ingest --rebuild` (or switch the embedding back)."
            )

    def chunk_counts(self) -> dict[str, int]:
        """Chunks per document, for the corpus panel and reports."""
        got = self.get_all(["metadatas"])
        return dict(Counter(str(m.get("file_name", "?")) for m in got["metadatas"]))

    def documents(self) -> dict[str, Document]:
        return self.current().documents

    @property
    def bm25_path(self) -> Path:
        return self.settings.chroma.path / f"{self.settings.chroma.collection}.bm25"

    def nodes(self) -> list[TextNode]:
        """Every chunk in the collection, once each, as LlamaIndex nodes (for the BM25 index)."""
        got = self.get_all(["documents", "metadatas"])
        nodes = {i: metadata_dict_to_node(meta, text=text) for i, text, meta in zip(got["ids"], got["documents"], got["metadatas"])}
        return list(nodes.values())  # a page read while another process deletes can repeat a record

    def titles(self) -> dict[str, str]:
        """Each indexed file's title (its file name when it has none), for questions that name a document."""
        docs = self.documents().values()
        return {str(d.metadata.get("file_name")): str(d.metadata.get("title") or d.metadata.get("file_name")) for d in docs}

    def openings(self) -> dict[str, str]:
        """Each indexed file's first lines, where a byline stands ("By AFP"): questions name documents by them too."""
        return {str(d.metadata.get("file_name")): "\n".join([line for line in d.text[:2000].splitlines() if line.strip()][:OPENING_LINES])
                for d in self.documents().values()}

    def source_hashes(self) -> dict[str, str]:
        """Each indexed file's content hash: what tells a feedback case that its documents changed."""
        return _source_hashes(self.documents())

    def document_chunks(self, source: str) -> list[TextNode]:
        """One file's chunks in reading order: a summary reads the document, not a ranking of it."""
        got = self.collection.get(where={"file_name": source}, include=["documents", "metadatas"])
        nodes = [metadata_dict_to_node(meta, text=text) for text, meta in zip(got["documents"], got["metadatas"])]
        return sorted(nodes, key=lambda n: n.start_char_idx or 0)

    def get_all(self, include: list[str]) -> dict[str, list]:
        return paged_get(self.collection, include)

    def current(self) -> Snapshot:
        """BM25 and the document records of the index version in shared storage.

        The version is checked at most every `chroma.refresh_s`, so an ingest by another process
        or replica shows within about that time plus one reload. While one thread reloads, the
        others go on answering from the version they have.
        """
        if self._snapshot is not None and time.monotonic() - self._checked < self.settings.chroma.refresh_s:
            return self._snapshot
        if not self._refreshing.acquire(blocking=self._snapshot is None):
            return self._snapshot
        try:
            self._checked = time.monotonic()
            version = self._live_version()
            if self._snapshot is None or version != self._snapshot.version:
                self._snapshot = self._load_snapshot(version)
            return self._snapshot
        finally:
            self._refreshing.release()

    def _live_version(self) -> str:
        """The version in the collection's metadata, read afresh; follows a collection rebuilt elsewhere."""
        from chromadb.errors import NotFoundError

        try:
            live = self.client.get_collection(self.settings.chroma.collection, embedding_function=None)
        except NotFoundError:  # dropped by a rebuild elsewhere, not yet created again: keep what we have
            return self._snapshot.version if self._snapshot else ""
        if live.id != self.collection.id:
            self.collection = live
            self.vector_store = BatchedChromaVectorStore(chroma_collection=live, max_batch=self.vector_store.max_batch)
        return str((live.metadata or {}).get(VERSION_KEY, ""))

    def _load_snapshot(self, version: str) -> Snapshot:
        docs = _open_docstore(self.settings, self.client).docs
        bm25 = self._load_bm25(version) if self.settings.retrieval.mode == "hybrid" else None
        return Snapshot(version, bm25, {doc_id: doc for doc_id, doc in docs.items() if isinstance(doc, Document)})

    def publish(self) -> None:
        """Give the index a new version, which every process then loads (this one at its next question).

        In embedded mode BM25 is persisted first, stamped with the version, so another process
        loads it from the folder instead of rebuilding it.
        """
        version = uuid.uuid4().hex
        if self.settings.chroma.mode == "embedded":
            self.rebuild_bm25(version)
        # Chroma replaces the whole metadata and refuses `hnsw:` keys once the collection exists
        meta = {k: v for k, v in (self.collection.metadata or {}).items() if not k.startswith("hnsw:")}
        self.collection.modify(metadata={**meta, VERSION_KEY: version})
        self._checked = -math.inf

    def rebuild_bm25(self, version: str) -> None:
        """Re-index the chunks for BM25 (LlamaIndex BM25Retriever) and persist it next to Chroma (embedded mode)."""
        shutil.rmtree(self.bm25_path, ignore_errors=True)
        retriever = self._build_bm25()
        if retriever is None:
            return
        tmp = self.bm25_path.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        retriever.persist(str(tmp), show_progress=False)
        (tmp / VERSION_KEY).write_text(version)
        os.replace(tmp, self.bm25_path)

    def _build_bm25(self):  # noqa: ANN202 - BM25Retriever | None
        nodes = self.nodes()
        if not nodes:
            return None
        # room for post-hoc filtering; bm25s needs k <= number of chunks
        return _bm25_class().from_defaults(nodes=nodes, similarity_top_k=min(4 * self.settings.retrieval.candidates, len(nodes)),
                                           language="en")

    def _load_bm25(self, version: str):  # noqa: ANN202 - BM25Retriever | None
        """BM25 of `version`: from the folder when persisted for it (embedded mode), else rebuilt from the chunks."""
        if self.settings.chroma.mode == "http":
            return self._build_bm25()
        stamp = self.bm25_path / VERSION_KEY
        if not stamp.exists() or stamp.read_text() != version:
            self.rebuild_bm25(version)
        if not self.bm25_path.exists():
            return None
        try:
            retriever = _bm25_class().from_persist_dir(str(self.bm25_path), show_progress=False)
        except Exception as exc:  # damaged files
            raise IndexStateError(f"The BM25 index {self.bm25_path} is unreadable ({exc}). Run `rag ingest --rebuild`.") from exc
        retriever.similarity_top_k = min(4 * self.settings.retrieval.candidates, int(retriever.bm25.scores.get("num_docs", 1)))
        return retriever


def _bm25_class():  # noqa: ANN202
    """LlamaIndex's BM25Retriever; bm25s sets its own logger to DEBUG on import, so quiet it after."""
    from llama_index.retrievers.bm25 import BM25Retriever

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return BM25Retriever


def _source_hashes(documents: dict[str, BaseNode]) -> dict[str, str]:
    return {str(d.metadata.get("file_name")): d.hash for d in documents.values() if isinstance(d, Document)}


def stored_source_hashes(settings: Settings) -> dict[str, str]:
    """The indexed files' content hashes, read from the docstore alone (no models)."""
    return _source_hashes(_open_docstore(settings).docs)


def _docstore_path(settings: Settings) -> Path:
    return settings.chroma.path / f"{settings.chroma.collection}.docstore.json"


def _docstore_collection(settings: Settings) -> str:
    return f"{settings.chroma.collection}.docstore"


def _open_docstore(settings: Settings, client: Any = None) -> KVDocumentStore:
    """The document records: a JSON file in the index folder, or a collection on the Chroma server (http mode)."""
    if settings.chroma.mode == "embedded":
        return _load_docstore(_docstore_path(settings))
    records = (client or _client(settings)).get_or_create_collection(_docstore_collection(settings), embedding_function=None)
    return KVDocumentStore(ChromaKVStore(records))


def open_index(settings: Settings, embed_model: BaseEmbedding, embed_label: str) -> Index:
    """Open (creating if needed) the collection and docstore named by the settings."""
    client = _client(settings)
    try:
        collection = client.get_or_create_collection(
            name=settings.chroma.collection,
            embedding_function=None,
            metadata={"hnsw:space": "cosine", **_fingerprint(settings, embed_label)},
        )
    except Exception as exc:
        raise IndexStateError(
            f"The index at {settings.chroma.path} cannot be opened ({exc}). Rebuild it with `rag ingest --rebuild`."
        ) from exc
    return Index(
        settings=settings,
        embed_model=embed_model,
        embed_label=embed_label,
        client=client,
        collection=collection,
        vector_store=BatchedChromaVectorStore(chroma_collection=collection, max_batch=client.get_max_batch_size()),
        docstore=_open_docstore(settings, client),
        docstore_path=_docstore_path(settings),
    )


class SourceSpans(TransformComponent):
    """Adds each chunk's character span in the source file (`source_start`, `source_end`).

    The splitter records offsets in the cleaned text; citations point into the file a user
    can open, so the spans are mapped back through the document's OffsetMap.
    """

    _offsets: dict[str, OffsetMap] = PrivateAttr(default_factory=dict)

    def __init__(self, offsets: dict[str, OffsetMap], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._offsets = offsets

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        for node in nodes:
            start, end = getattr(node, "start_char_idx", None), getattr(node, "end_char_idx", None)
            if start is None or end is None:
                continue
            mapping = self._offsets.get(node.ref_doc_id or "")
            raw_start, raw_end = mapping.span(start, end) if mapping else (start, end)
            node.metadata["source_start"] = raw_start
            node.metadata["source_end"] = raw_end
            node.excluded_embed_metadata_keys = list(node.metadata)
            node.excluded_llm_metadata_keys = list(node.metadata)
        return nodes


def _chunk_id(index: int, document: BaseNode) -> str:
    """Deterministic chunk ids: a re-run after a crash overwrites instead of duplicating."""
    return f"{document.node_id}::{index}"


def make_splitter(settings: Settings) -> SentenceSplitter:
    return SentenceSplitter(
        chunk_size=settings.chunking.chunk_size,
        chunk_overlap=settings.chunking.chunk_overlap,
        id_func=_chunk_id,
    )


@dataclass
class IngestReport:
    folder: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    chunks_added: int = 0
    chunks_total: int = 0
    seconds: float = 0.0
    rebuilt: bool = False

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, {len(self.removed)} removed, "
            f"{len(self.unchanged)} unchanged, {len(self.skipped)} skipped; "
            f"{self.chunks_added} chunks embedded, {self.chunks_total} in the index ({self.seconds:.2f} s)"
        )


@contextmanager
def ingest_lock(settings: Settings, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Serialise ingests of one index across processes: a second ingest waits for the first."""
    settings.chroma.path.mkdir(parents=True, exist_ok=True)
    lock_path = settings.chroma.path / f"{settings.chroma.collection}.ingest.lock"
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait(f"Another ingest of this index is running; waiting for it to finish ({lock_path}).")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load_docstore(path: Path) -> SimpleDocumentStore:
    try:
        return SimpleDocumentStore.from_persist_path(str(path)) if path.exists() else SimpleDocumentStore()
    except ValueError as exc:
        raise IndexStateError(f"The docstore {path} is unreadable ({exc}). Rebuild with `rag ingest --rebuild`.") from exc


def _persist_docstore(index: Index) -> None:
    """Write the docstore file atomically: a crash mid-write leaves the previous copy intact.
    (In http mode every docstore change is already a write to the server.)"""
    if index.settings.chroma.mode == "http":
        return
    tmp = index.docstore_path.with_suffix(".tmp")
    index.docstore.persist(str(tmp))
    os.replace(tmp, index.docstore_path)


_UUID_DIR = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def wipe_index_folder(settings: Settings) -> list[str]:
    """Delete the index files (Chroma's sqlite and segment folders, docstore, BM25) so it can be rebuilt.

    Only files the index writes are touched, and never inside the corpus folder.
    """
    folder = settings.chroma.path.resolve()
    corpus = settings.corpus.path.resolve()
    if folder == corpus or corpus.is_relative_to(folder) or folder.is_relative_to(corpus):
        raise IndexStateError(f"The index folder {folder} overlaps the corpus folder {corpus}; move chroma.path elsewhere.")
    name = settings.chroma.collection
    removed = []
    for entry in folder.iterdir() if folder.is_dir() else []:
        ours = entry.name in ("chroma.sqlite3", f"{name}.docstore.json", f"{name}.bm25", f"{name}.bm25.tmp")
        if ours or (entry.is_dir() and _UUID_DIR.match(entry.name)):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            removed.append(entry.name)
    return removed


def open_or_reset(settings: Settings, embed_model: BaseEmbedding, embed_label: str, reset_broken: bool) -> Index:
    """Open the index; with `reset_broken`, an index that cannot be opened is wiped and created anew."""
    try:
        return open_index(settings, embed_model, embed_label)
    except IndexStateError:
        if not reset_broken or settings.chroma.mode != "embedded":
            raise
        wipe_index_folder(settings)
        from chromadb.api.client import SharedSystemClient

        SharedSystemClient.clear_system_cache()  # forget the client bound to the damaged files
        return open_index(settings, embed_model, embed_label)


def rebuild(index: Index) -> Index:
    """Drop the collection and docstore (never the corpus) and open them afresh."""
    names = [index.settings.chroma.collection] + ([_docstore_collection(index.settings)] if index.settings.chroma.mode == "http" else [])
    for name in names:
        with suppress(Exception):  # missing or already broken: nothing to drop
            index.client.delete_collection(name)
    index.docstore_path.unlink(missing_ok=True)
    shutil.rmtree(index.bm25_path, ignore_errors=True)
    return open_index(index.settings, index.embed_model, index.embed_label)


def _plan(index: Index, corpus: LoadedCorpus, report: IngestReport) -> list[Document]:
    """Sort documents into added/updated/unchanged/removed by content hash."""
    known = {doc_id: h for h, doc_id in index.docstore.get_all_document_hashes().items()}
    current = {doc.id_ for doc in corpus.documents}
    todo: list[Document] = []
    for doc in corpus.documents:
        old = known.get(doc.id_)
        if old is None:
            report.added.append(doc.id_)
            todo.append(doc)
        elif old != doc.hash:
            report.updated.append(doc.id_)
            todo.append(doc)
        else:
            report.unchanged.append(doc.id_)
    report.removed = sorted(set(known) - current)
    return todo


def ingest(
    index: Index,
    folder: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_wait: Callable[[str], None] | None = None,
    rebuild_first: bool = False,
) -> tuple[Index, IngestReport]:
    """Bring the index in line with the folder; returns the (possibly rebuilt) index and a report."""
    start = time.perf_counter()
    folder = folder or index.settings.corpus.path
    with ingest_lock(index.settings, on_wait):
        index.docstore = _open_docstore(index.settings, index.client)  # another process may have ingested meanwhile
        corpus = load_corpus(folder, int(index.settings.corpus.max_file_mb * 2**20))
        report = IngestReport(folder=str(folder), skipped=corpus.skipped)
        if rebuild_first or _fingerprint(index.settings, index.embed_label) != index.built_with():
            report.rebuilt = bool(index.count()) or rebuild_first
            index = rebuild(index)
        todo = _plan(index, corpus, report)
        _remove(index, report.removed)
        pipeline = IngestionPipeline(
            transformations=[make_splitter(index.settings), SourceSpans(corpus.offsets), index.embed_model],
            vector_store=index.vector_store,
            docstore=index.docstore,
            docstore_strategy=DocstoreStrategy.UPSERTS,
            disable_cache=True,
        )
        for done in range(0, len(todo), BATCH_DOCS):
            batch = todo[done : done + BATCH_DOCS]
            _clear_leftovers(index, [d.id_ for d in batch if d.id_ in report.added])
            nodes = pipeline.run(documents=batch)
            report.chunks_added += len(nodes)
            _persist_docstore(index)
            if progress:
                progress(min(done + BATCH_DOCS, len(todo)), len(todo))
        if report.removed or not todo:
            _persist_docstore(index)
        if report.added or report.updated or report.removed or report.rebuilt or VERSION_KEY not in (index.collection.metadata or {}):
            index.publish()
    report.chunks_total = index.count()
    report.seconds = time.perf_counter() - start
    return index, report


def _remove(index: Index, doc_ids: list[str]) -> None:
    for doc_id in doc_ids:
        index.docstore.delete_document(doc_id, raise_error=False)
        index.vector_store.delete(doc_id)


def _clear_leftovers(index: Index, doc_ids: list[str]) -> None:
    """Chunks of 'new' documents can only be leftovers of an interrupted ingest: drop them first."""
    for i in range(0, len(doc_ids), PAGE):  # in pages, for the same SQL variable limit
        index.collection.delete(where={"document_id": {"$in": doc_ids[i : i + PAGE]}})
