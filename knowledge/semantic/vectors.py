"""The passages' vectors: embedding what is not embedded yet, and finding the nearest.

Vectors live in the database (`ChunkVector`, one per passage, deleted with it), so every server
process shares them and a restart keeps them. Each process keeps them in memory as one matrix
too, brought in step with the table at each scan (new rows read, deleted ones dropped), and
ranks all of them by cosine for a query (exact: no approximate index to tune or rebuild).

Why not sqlite-vec or pgvector: sqlite-vec is a loadable extension, and Python builds without
`enable_load_extension` (this machine's, pyenv's default) cannot load it; pgvector must be
installed into the PostgreSQL server, which a Debian PostgreSQL 15 here does not package.
Both would rank the same vectors the same way; the in-memory matrix needs neither.

Embedding is slow (about 40 ms of CPU per passage), so it never holds up a search: after a
scan a thread embeds the passages that have no vector yet, and until then a new or changed
note is found by its words alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np
from django.db import IntegrityError, connection, transaction

from knowledge.models import Chunk, ChunkVector
from knowledge.semantic.encoder import DIMENSIONS, Vectors, encoder

logger = logging.getLogger(__name__)

# Passages embedded and written per transaction.
EMBED_BATCH = 128

Progress = Callable[[int, int], None]


def passage_text(names: str, heading: str, body: str) -> str:
    """What a passage's vector stands for: the words of its file name, its headings, its text."""
    return "\n".join(part for part in (names, heading, body) if part)


def vectors_pending() -> int:
    return Chunk.objects.filter(vector__isnull=True).count()


def vectors_update(progress: Progress | None = None) -> int:
    """Embed every passage that has no vector yet; returns how many were embedded."""
    total = vectors_pending() if progress else 0
    done = 0
    while True:
        rows = list(
            Chunk.objects.filter(vector__isnull=True)
            .order_by("id")
            .values_list("id", "names", "heading", "body")[:EMBED_BATCH]
        )
        if not rows:
            return done
        embedded = encoder().embed([passage_text(*row[1:]) for row in rows])
        try:
            with transaction.atomic():
                ChunkVector.objects.bulk_create(
                    [
                        ChunkVector(chunk_id=row[0], vector=vector.tobytes())
                        for row, vector in zip(rows, embedded, strict=True)
                    ],
                    ignore_conflicts=True,  # another process embedded some of them meanwhile
                )
        except IntegrityError:
            # A note changed while its passages were embedded: they are gone, and the next
            # round reads the new ones.
            logger.info("knowledge: passages deleted while being embedded; taken again")
        done += len(rows)
        if progress is not None:
            progress(min(done, total), max(total, done))


class VectorIndex:
    """This process's copy of the vectors, one row per passage, ranked by cosine."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # held only to swap or read the arrays: searches never wait long
        self._sync_lock = threading.Lock()  # one sync at a time, or two would add the same rows
        self._ids = np.zeros(0, dtype=np.int64)
        self._matrix = np.zeros((0, DIMENSIONS), dtype=np.float32)
        self._rows: set[int] = set()
        self._fingerprint: tuple[int, int, int] = (0, 0, 0)

    def __len__(self) -> int:
        return len(self._rows)

    def sync(self) -> None:
        """Read the vectors written since the last sync, drop those deleted since."""
        with self._sync_lock:
            # Count, sum and largest of the ids: unchanged, nothing to read (the usual case at each
            # scan; listing 175,000 ids costs far more). New passages have larger ids than any
            # deleted one, so a change that keeps all three is rare, and mends at the next change.
            fingerprint = _fingerprint()
            if fingerprint == self._fingerprint:
                return
            stored = set(ChunkVector.objects.values_list("chunk_id", flat=True).iterator(chunk_size=10_000))
            gone, new = self._rows - stored, sorted(stored - self._rows)
            added_ids: list[int] = []
            added: list[bytes] = []
            for start in range(0, len(new), 5000):
                rows = ChunkVector.objects.filter(chunk_id__in=new[start : start + 5000])
                for chunk_id, blob in rows.values_list("chunk_id", "vector"):
                    added_ids.append(chunk_id)
                    added.append(bytes(blob))
            keep = np.array([int(chunk_id) not in gone for chunk_id in self._ids], dtype=bool)
            ids = np.concatenate([self._ids[keep], np.array(added_ids, dtype=np.int64)])
            fresh = np.frombuffer(b"".join(added), dtype=np.float32).reshape(-1, DIMENSIONS)
            matrix = np.concatenate([self._matrix[keep], fresh])
            with self._lock:
                self._ids, self._matrix = ids, matrix
            self._rows = (self._rows - gone) | set(added_ids)
            # What was read, which may already differ from the fingerprint taken before reading.
            self._fingerprint = _fingerprint_of(self._rows)

    def nearest(self, query: Vectors, count: int) -> list[int]:
        """The chunk ids of the `count` passages closest in meaning to the query, closest first."""
        with self._lock:
            ids, matrix = self._ids, self._matrix
        if not len(ids):
            return []
        scores = matrix @ query
        count = min(count, len(ids))
        best = np.argpartition(-scores, count - 1)[:count]
        return [int(ids[row]) for row in best[np.argsort(-scores[best])]]


def _fingerprint() -> tuple[int, int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), coalesce(sum(chunk_id), 0), coalesce(max(chunk_id), 0) FROM knowledge_chunkvector"
        )
        count, total, largest = cursor.fetchone()
    return int(count), int(total), int(largest)


def _fingerprint_of(ids: set[int]) -> tuple[int, int, int]:
    return len(ids), sum(ids), max(ids, default=0)


_index = VectorIndex()
_backfill_lock = threading.Lock()
_backfill_wanted = threading.Event()


def vector_index() -> VectorIndex:
    return _index


def backfill_start() -> None:
    """Embed the passages that have none, in a thread of its own; one at a time per process.
    A call while it runs makes it look again before it ends (a scan may have just added some)."""
    _backfill_wanted.set()
    if not _backfill_lock.acquire(blocking=False):
        return
    threading.Thread(target=_backfill, name="knowledge-embed", daemon=True).start()


def backfill_running() -> bool:
    return _backfill_lock.locked()


def _backfill() -> None:
    try:
        while _backfill_wanted.is_set():
            _backfill_wanted.clear()
            if vectors_update():
                _index.sync()
    except Exception:  # a thread's failure would go unseen otherwise; the next scan retries
        logger.exception("knowledge: embedding passages failed")
    finally:
        connection.close()
        _backfill_lock.release()
