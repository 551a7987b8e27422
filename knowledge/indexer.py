"""Keeping the index in step with the folders (the services: every write to the index is here).

A scan lists the folders (names, sizes and mtimes: no file is opened), compares that with the
`Document` rows, and reads only the files that are new or changed. Files are opened through
the tools' workspace jail (`tools.workspace.open_file_in`), so what the indexer reads obeys the
same rules as `read_file`: no symlink out of the folder, no FIFO or device, a size limit.
The walk never follows a symlink: a link to a note inside a folder would index the note twice,
and a link outside is an escape.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from knowledge.models import Chunk, Document
from knowledge.passages import is_note, note_names, note_title, split_passages
from tools.base import ToolError
from tools.workspace import Root, open_file_in, roots_from_specs

logger = logging.getLogger(__name__)

BATCH_FILES = 200
SNIFF_BYTES = 8192
# A file modified this recently may change again within the file system's timestamp
# granularity without its mtime moving: it is marked to be read again by the next scan.
RACY_NS = 1_000_000_000

# Files indexed or removed by one update past which PostgreSQL's statistics are refreshed.
ANALYZE_AFTER_FILES = 500

Key = tuple[str, str]  # (root name, path in the root)
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class FileState:
    root: Root
    path: str
    size: int
    mtime_ns: int


@dataclass
class IndexReport:
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: int = 0
    seconds: float = 0.0


def knowledge_roots() -> list[Root]:
    return roots_from_specs(settings.KNOWLEDGE_DIRS)


def notes_on_disk(roots: list[Root], max_files: int) -> dict[Key, FileState]:
    """Every note file of the folders, at most `max_files` (a folder set to `/` must not hang)."""
    found: dict[Key, FileState] = {}
    for root in roots:
        for directory, dirnames, filenames in os.walk(root.path, followlinks=False):
            dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
            relative_dir = os.path.relpath(directory, root.path)
            for name in sorted(filenames):
                if not is_note(name):
                    continue
                try:
                    st = os.lstat(os.path.join(directory, name))
                except OSError:
                    continue  # deleted while we walked
                if not stat.S_ISREG(st.st_mode):
                    continue  # symlinks, FIFOs, sockets, devices
                path = name if relative_dir == "." else f"{relative_dir.replace(os.sep, '/')}/{name}"
                found[(root.name, path)] = FileState(root, path, st.st_size, st.st_mtime_ns)
                if len(found) >= max_files:
                    logger.warning("knowledge: more than %d files; the rest are not indexed", max_files)
                    return found
    return found


def _read_note(state: FileState, roots: list[Root]) -> tuple[str, int] | None:
    """The file's text and its mtime as read, or None when it is not an indexable note."""
    try:
        opened = open_file_in(state.root, state.path.split("/"), roots)
    except (ToolError, OSError) as exc:
        logger.info("knowledge: not indexed %s/%s: %s", state.root.name, state.path, exc)
        return None
    limit = settings.KNOWLEDGE_MAX_FILE_BYTES
    with opened:
        if opened.st.st_size > limit:
            logger.info("knowledge: not indexed %s/%s: over KNOWLEDGE_MAX_FILE_BYTES", state.root.name, state.path)
            return None
        parts = []
        remaining = limit  # a file that grows while we read is still cut at the limit
        while remaining > 0 and (part := os.read(opened.fd, min(remaining, 1 << 20))):
            parts.append(part)
            remaining -= len(part)
        data = b"".join(parts)
        mtime_ns = opened.st.st_mtime_ns
    if b"\x00" in data[:SNIFF_BYTES]:
        return None  # binary
    if time.time_ns() - mtime_ns < RACY_NS:
        mtime_ns = -1
    # A note in another encoding stays searchable by its ASCII words rather than being dropped.
    return data.decode("utf-8", errors="replace").removeprefix("\ufeff"), mtime_ns


def _build(state: FileState, text: str, mtime_ns: int) -> tuple[Document, list[Chunk]]:
    lines = text.splitlines()
    title = note_title(state.path, lines)
    names = note_names(state.path, title)
    chunks = [
        Chunk(start_line=p.start_line, end_line=p.end_line, names=names, heading=p.heading, body=p.body)
        for p in split_passages(lines)
    ]
    document = Document(
        root=state.root.name,
        path=state.path,
        title=title,
        size=state.size,
        mtime_ns=mtime_ns,
        chunk_count=len(chunks),
    )
    return document, chunks


def _write_batch(states: list[FileState], roots: list[Root], known: dict[Key, int]) -> int:
    """Re-index a batch of files in one transaction; returns how many were skipped."""
    built = []
    skipped = 0
    for state in states:
        read = _read_note(state, roots)
        if read is None:
            skipped += 1
            continue
        built.append(_build(state, *read))
    stale = [known[(s.root.name, s.path)] for s in states if (s.root.name, s.path) in known]
    try:
        with transaction.atomic():
            if stale:
                Document.objects.filter(id__in=stale).delete()
            documents = Document.objects.bulk_create([document for document, _ in built])
            chunks = []
            for document, (_, document_chunks) in zip(documents, built, strict=True):
                for chunk in document_chunks:
                    chunk.document = document
                chunks.extend(document_chunks)
            Chunk.objects.bulk_create(chunks, batch_size=500)
    except IntegrityError:
        # Another process indexed one of these files at the same moment; its rows stand, and
        # the next scan compares again.
        logger.info("knowledge: a batch was indexed concurrently; left to the next scan")
    return skipped


def _delete(ids: Iterable[int]) -> None:
    ids = list(ids)
    for start in range(0, len(ids), 500):
        Document.objects.filter(id__in=ids[start : start + 500]).delete()


_update_lock = threading.Lock()


def index_update(*, rebuild: bool = False, progress: Progress | None = None) -> IndexReport:
    """Bring the index in step with the folders: read new and changed files, drop deleted ones.
    With `rebuild`, everything is read again."""
    with _update_lock:
        return _update(rebuild=rebuild, progress=progress)


def _update(*, rebuild: bool, progress: Progress | None) -> IndexReport:
    started = time.monotonic()
    roots = knowledge_roots()
    on_disk = notes_on_disk(roots, settings.KNOWLEDGE_MAX_FILES)
    if rebuild and connection.vendor == "postgresql":
        # Deleting every row would leave them all dead in the table until a VACUUM, and the GIN
        # index's bitmap scans read them (a search took 0.35 s for one word after three rebuilds).
        with connection.cursor() as cursor:
            # The word counts too: TRUNCATE runs no DELETE trigger (migration 0004).
            cursor.execute("TRUNCATE knowledge_chunkvector, knowledge_chunk, knowledge_document, knowledge_lexeme")
    elif rebuild:
        _delete(Document.objects.values_list("id", flat=True))
    known: dict[Key, int] = {}
    report = IndexReport()
    gone = []
    for doc_id, root, path, size, mtime_ns in Document.objects.values_list("id", "root", "path", "size", "mtime_ns"):
        state = on_disk.get((root, path))
        if state is None:
            gone.append(doc_id)
        elif state.size == size and state.mtime_ns == mtime_ns:
            report.unchanged += 1
            on_disk.pop((root, path))
        else:
            known[(root, path)] = doc_id
    _delete(gone)
    report.removed = len(gone)
    todo = list(on_disk.values())
    for start in range(0, len(todo), BATCH_FILES):
        batch = todo[start : start + BATCH_FILES]
        report.skipped += _write_batch(batch, roots, known)
        if progress is not None:
            progress(min(start + BATCH_FILES, len(todo)), len(todo))
    report.updated = len(known)
    report.added = len(todo) - len(known) - report.skipped
    if connection.vendor == "postgresql" and len(todo) + len(gone) >= ANALYZE_AFTER_FILES:
        # Autovacuum's analyze comes minutes later, if at all; until then the planner guesses the
        # words' frequencies and reads a whole GIN bitmap for the commonest (0.3 s for one word).
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE knowledge_chunk, knowledge_document")
    report.seconds = time.monotonic() - started
    if todo or gone:
        logger.info(
            "knowledge: %d added, %d updated, %d removed, %d skipped in %.2f s",
            report.added,
            report.updated,
            report.removed,
            report.skipped,
            report.seconds,
        )
    return report


_last_scan: dict[tuple[str, ...], float] = {}


def index_refresh() -> None:
    """The scan before a search, at most once per KNOWLEDGE_SCAN_INTERVAL per set of folders.
    When another thread is already updating, the search goes ahead on the index as it is."""
    specs = tuple(settings.KNOWLEDGE_DIRS)
    last = _last_scan.get(specs)
    if last is not None and time.monotonic() - last < settings.KNOWLEDGE_SCAN_INTERVAL:
        return
    if not _update_lock.acquire(blocking=False):
        return
    try:
        _update(rebuild=False, progress=None)
        if settings.KNOWLEDGE_SEMANTIC:
            from knowledge.semantic.vectors import vectors_maintain

            vectors_maintain()
    finally:
        _last_scan[specs] = time.monotonic()
        _update_lock.release()
