"""The passages' vectors: embedding what is not embedded yet, and finding the nearest.

Vectors live in the database (`ChunkVector`, one per passage, deleted with it), so every server
process shares them and a restart keeps them. Each process also keeps them in memory as one
matrix, and ranks all of them by cosine for a query (exact: no approximate index to tune).

Nothing here runs on a search's path but the ranking: after a scan, a thread of the process
embeds the passages that have none yet (one process at a time across the deployment: embedding
is slow, about 40 to 50 ms of CPU a passage, and two would embed the same ones), then brings the
matrix in step with the table. Until then a new or changed note is found by its words alone, and
a deleted passage that the matrix still holds is dropped when its row is not found.

Why not sqlite-vec or pgvector: sqlite-vec is a loadable extension, and Python builds without
`enable_load_extension` (this machine's, pyenv's default) cannot load it; pgvector must be
installed into the PostgreSQL server, which the Debian repositories here do not package for
PostgreSQL 15. Both would rank the same vectors by the same cosine (sqlite-vec's `vec0` by
brute force too); the in-memory matrix needs neither.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import logging
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from django.db import IntegrityError, connection, transaction

from knowledge.models import Chunk, ChunkVector
from knowledge.semantic.encoder import DIMENSIONS, Vectors, encoder

logger = logging.getLogger(__name__)

# Passages embedded and written per transaction (about 5 s of CPU).
EMBED_BATCH = 128
# PostgreSQL advisory lock key of the deployment's one embedder ("kbembed" in ASCII).
EMBEDDER_LOCK_KEY = 0x6B62656D626564

Progress = Callable[[int, int], None]


def passage_text(names: str, heading: str, body: str) -> str:
    """What a passage's vector stands for: the words of its file name, its headings, its text."""
    return "\n".join(part for part in (names, heading, body) if part)


def vectors_pending() -> int:
    return Chunk.objects.filter(vector__isnull=True).count()


def vectors_update(progress: Progress | None = None, *, wait: bool = True, batches: int | None = None) -> int:
    """Embed every passage that has no vector yet (or the first `batches` batches of them);
    returns how many were embedded. Without `wait`, it gives way to another process already
    embedding (and returns what it had done)."""
    total = vectors_pending() if progress else 0
    done = 0
    for _ in itertools.repeat(None) if batches is None else range(batches):
        with _embedder_turn(wait=wait) as turn:
            if not turn:
                return done
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
                    # A note that changed while its passages were embedded: their rows are gone,
                    # and their vectors are left out rather than failing the whole batch.
                    alive = set(Chunk.objects.filter(id__in=[row[0] for row in rows]).values_list("id", flat=True))
                    written = ChunkVector.objects.bulk_create(
                        [
                            ChunkVector(chunk_id=row[0], vector=vector.tobytes())
                            for row, vector in zip(rows, embedded, strict=True)
                            if row[0] in alive
                        ],
                        ignore_conflicts=True,
                    )
                done += len(written)
            except IntegrityError:
                # Deleted between that check and the commit: the next round reads the new ones.
                logger.info("knowledge: passages deleted while being embedded; taken again")
        if progress is not None:
            progress(min(done, total), max(total, done))
    return done


_process_turn = threading.Lock()


@contextlib.contextmanager
def _embedder_turn(*, wait: bool) -> Iterator[bool]:
    """One batch's turn as the deployment's embedder: a PostgreSQL advisory lock, or a lock
    file named after the SQLite database's path, in the temporary folder (a process lock for an
    in-memory database). Taken per batch, so no lock is held for the hours a large folder takes."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {'pg_advisory_lock' if wait else 'pg_try_advisory_lock'}(%s)", [EMBEDDER_LOCK_KEY])
            held = wait or bool(cursor.fetchone()[0])
        try:
            yield held
        finally:
            if held:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [EMBEDDER_LOCK_KEY])
        return
    if not _process_turn.acquire(blocking=wait):
        yield False
        return
    try:
        with _lock_file(wait=wait) as held:
            yield held
    finally:
        _process_turn.release()


@contextlib.contextmanager
def _lock_file(*, wait: bool) -> Iterator[bool]:
    name = str(connection.settings_dict["NAME"])
    if "mode=memory" in name or name == ":memory:":
        yield True  # a database no other process can open
        return
    digest = hashlib.sha256(str(Path(name).resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"dreamytin-embedder-{digest}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class VectorIndex:
    """This process's copy of the vectors, one row per passage, ranked by cosine."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # held only to swap the arrays
        self._sync_lock = threading.Lock()  # one sync at a time, or two would add the same rows
        self._ids = np.zeros(0, dtype=np.int64)
        self._matrix = np.zeros((0, DIMENSIONS), dtype=np.float32)
        self._fingerprint = _fingerprint_of(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def sync(self) -> None:
        """Read the vectors written since the last sync, drop those deleted since."""
        with self._sync_lock:
            # Count, sum and largest id: unchanged, nothing to list. A change that keeps all
            # three (as many passages embedded as deleted, with the same sum of ids) is rare,
            # and mends at the next change.
            if _fingerprint() == self._fingerprint:
                return
            stored = np.fromiter(
                ChunkVector.objects.values_list("chunk_id", flat=True).iterator(chunk_size=10_000), dtype=np.int64
            )
            keep = np.isin(self._ids, stored)
            new = np.setdiff1d(stored, self._ids)
            fresh_ids = np.empty(len(new), dtype=np.int64)
            fresh = np.empty((len(new), DIMENSIONS), dtype=np.float32)
            count = 0
            for start in range(0, len(new), 5000):
                rows = ChunkVector.objects.filter(chunk_id__in=new[start : start + 5000].tolist())
                for chunk_id, blob in rows.values_list("chunk_id", "vector"):
                    fresh_ids[count] = chunk_id
                    fresh[count] = np.frombuffer(blob, dtype=np.float32)
                    count += 1
            ids = np.concatenate([self._ids[keep], fresh_ids[:count]])
            matrix = np.concatenate([self._matrix[keep], fresh[:count]])
            with self._lock:
                self._ids, self._matrix = ids, matrix
            self._fingerprint = _fingerprint_of(ids)

    def nearest(self, query: Vectors, count: int) -> list[tuple[int, float]]:
        """(chunk id, cosine) of the `count` passages closest in meaning to the query, closest first."""
        with self._lock:
            ids, matrix = self._ids, self._matrix
        if not len(ids):
            return []
        scores = matrix @ query
        count = min(count, len(ids))
        best = np.argpartition(-scores, count - 1)[:count]
        return [(int(ids[row]), float(scores[row])) for row in best[np.argsort(-scores[best])]]


def _fingerprint() -> tuple[int, int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), coalesce(sum(chunk_id), 0), coalesce(max(chunk_id), 0) FROM knowledge_chunkvector"
        )
        count, total, largest = cursor.fetchone()
    return int(count), int(total), int(largest)


def _fingerprint_of(ids: np.ndarray) -> tuple[int, int, int]:
    return len(ids), int(ids.sum()), int(ids.max(initial=0))


_index = VectorIndex()
_maintainer = threading.Lock()
_maintain_wanted = threading.Event()


def vector_index() -> VectorIndex:
    return _index


def vectors_maintain() -> None:
    """After a scan: embed what has no vector (unless another process is at it), then bring this
    process's matrix in step, in a thread of its own; one at a time per process. A call while
    it runs makes it look again before it ends (the scan may have just added passages)."""
    _maintain_wanted.set()
    if not _maintainer.acquire(blocking=False):
        return
    threading.Thread(target=_maintain, name="knowledge-vectors", daemon=True).start()


def vectors_maintaining() -> bool:
    return _maintainer.locked()


def _maintain() -> None:
    try:
        while _maintain_wanted.is_set():
            _maintain_wanted.clear()
            if Chunk.objects.count() != ChunkVector.objects.count():
                # A batch at a time, the connection back to the pool in between: a large folder
                # takes hours, and the pool serves the chats meanwhile.
                while vectors_update(wait=False, batches=1):
                    connection.close()
            _index.sync()
    except Exception:  # a thread's failure would go unseen otherwise; the next scan retries
        logger.exception("knowledge: embedding passages failed")
    finally:
        connection.close()
        _maintainer.release()
    if _maintain_wanted.is_set():
        vectors_maintain()  # asked again between the last look and the release
