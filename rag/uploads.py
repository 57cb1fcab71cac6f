"""Adding documents from the chat window, and removing them: the corpus folder and the index change together.

An upload is checked as `rag ingest` checks a file (type, size, binary, readable text), in a
staging folder outside the corpus, before anything is written. A name already in the corpus
with other content needs a decision (replace, or keep both under a new name); the same content
is skipped. The files then go in (each written under a hidden name and renamed, so a half
copy is never read) and the index is brought up to date incrementally. If that fails, the
files are taken out again (a replaced one comes back) and the index is synced with the
restored folder: the corpus and the index stay as they were.

Written here because LlamaIndex has readers and ingestion but nothing that manages a corpus
folder with rollback.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path, PurePath
from typing import Callable

from rag.corpus import PlainTextReader, Skipped, doc_id, file_extractor, load_file, size_problem
from rag.errors import CorpusError

Progress = Callable[[int, int], None]


class OnConflict(str, Enum):
    ASK = "ask"  # leave the file out and report the name
    REPLACE = "replace"
    KEEP_BOTH = "keep both"  # "report (2).pdf"


@dataclass
class Upload:
    name: str
    data: bytes


@dataclass
class UploadResult:
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # names in the corpus with other content: ask the user
    summary: str = ""  # the ingest's report


def add_documents(engine, uploads: list[Upload], on_conflict: OnConflict = OnConflict.ASK,  # noqa: ANN001 - rag.engine.Engine
                  progress: Progress | None = None) -> UploadResult:
    """Check, copy in and index `uploads` (into corpus.uploads inside the corpus folder)."""
    settings = engine.settings
    corpus = settings.corpus.path
    target = corpus / settings.corpus.uploads
    result = UploadResult()
    placed: list[tuple[Path, Path | None]] = []  # (file written, backup of the one it replaced)
    with tempfile.TemporaryDirectory(prefix="rag-upload-") as staging:
        for upload in uploads:
            checked = _check(Path(staging), upload, int(settings.corpus.max_file_mb * 2**20))
            if isinstance(checked, Skipped):
                result.skipped.append(checked)
                continue
            destination = target / checked.name
            if destination.exists():
                if destination.read_bytes() == upload.data:
                    result.skipped.append(Skipped(checked.name, f"{checked.name}: already in the corpus with the same content, skipped."))
                    continue
                if on_conflict is OnConflict.ASK:
                    result.conflicts.append(checked.name)
                    continue
                if on_conflict is OnConflict.KEEP_BOTH:
                    destination = _free_name(destination)
            placed.append(_place(checked, destination, Path(staging)))
        if not placed:
            return result
        try:
            report = engine.ingest(progress=progress)
        except Exception as exc:
            _undo(placed)
            _resync(engine)
            raise CorpusError(f"The upload failed while indexing ({exc}); the corpus and the index are as they were.") from exc
    for written, backup in placed:
        (result.replaced if backup else result.added).append(doc_id(corpus, written))
    result.skipped += report.skipped
    result.summary = report.summary()
    return result


def remove_document(engine, source: str) -> str:  # noqa: ANN001
    """Delete a document from the corpus folder and the index; on failure both keep it."""
    corpus = engine.settings.corpus.path.resolve()
    path = (corpus / source).resolve()
    if not path.is_relative_to(corpus) or not path.is_file():
        raise CorpusError(f"{source} is not a file of the corpus {corpus}.")
    backup = path.with_name(f".removed-{path.name}")
    os.replace(path, backup)
    try:
        report = engine.ingest()
    except Exception as exc:
        os.replace(backup, path)
        _resync(engine)
        raise CorpusError(f"Removing {source} failed while indexing ({exc}); it is still in the corpus and the index.") from exc
    backup.unlink()
    return report.summary()


def _check(staging: Path, upload: Upload, max_bytes: int) -> Path | Skipped:
    """The upload written to the staging folder and read as `rag ingest` would, or why it is skipped."""
    name = PurePath(upload.name.replace("\\", "/")).name.strip()
    if not name or name.startswith("."):
        return Skipped(upload.name or "(no name)", f"{upload.name!r}: not a usable file name (empty or hidden), skipped.")
    staged = staging / name
    staged.write_bytes(upload.data)
    reason = size_problem(staged, max_bytes)
    if reason:
        return Skipped(name, reason)
    try:
        load_file(staging, staged, file_extractor(PlainTextReader()))
    except CorpusError as exc:
        return Skipped(name, str(exc))
    return staged


def _free_name(path: Path) -> Path:
    n = 2
    while (candidate := path.with_name(f"{path.stem} ({n}){path.suffix}")).exists():
        n += 1
    return candidate


def _place(staged: Path, destination: Path, staging: Path) -> tuple[Path, Path | None]:
    """Copy under a hidden name (never read by ingest), then rename into place; a replaced file is kept aside."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    hidden = destination.with_name(f".upload-{destination.name}")
    shutil.copyfile(staged, hidden)
    backup = None
    if destination.exists():
        backup = Path(shutil.copy2(destination, staging / f"replaced-{destination.name}"))
    os.replace(hidden, destination)
    return destination, backup


def _undo(placed: list[tuple[Path, Path | None]]) -> None:
    for written, backup in reversed(placed):
        if backup is not None:
            shutil.copy2(backup, written)
        else:
            written.unlink(missing_ok=True)


def _resync(engine) -> None:  # noqa: ANN001
    """Bring the index back in line with the restored folder (best effort: the error already raised says what failed)."""
    try:
        engine.ingest()
    except Exception:  # the original failure is the one reported
        pass
