"""The index: a row per note file, and its passages.

The full-text index itself is not a model field: on SQLite it is an FTS5 table kept in step
with `knowledge_chunk` by triggers, on PostgreSQL a generated `tsvector` column with a GIN
index (both made by migration 0002, see `knowledge.search` for the queries).
"""

from __future__ import annotations

from django.db import models


class Document(models.Model):
    """A file of a knowledge folder, as it was when last indexed."""

    root = models.CharField(max_length=64, help_text="the knowledge folder's name")
    path = models.CharField(max_length=1024, help_text="relative to the folder, '/'-separated")
    title = models.CharField(max_length=300)
    size = models.BigIntegerField()
    # -1 when the file changed within the file system's timestamp granularity of being read:
    # the next scan reads it again instead of trusting an mtime that a quick edit can repeat.
    mtime_ns = models.BigIntegerField()
    chunk_count = models.PositiveIntegerField(default=0)
    indexed_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["root", "path"], name="knowledge_document_unique_path")]
        ordering = ["root", "path"]

    def __str__(self) -> str:
        return f"{self.root}:{self.path}"


class Chunk(models.Model):
    """A passage of a few lines; neighbouring passages overlap, so a fact is never cut in two."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    start_line = models.PositiveIntegerField()  # 1-based, inclusive
    end_line = models.PositiveIntegerField()
    # Searched with more weight than the body: the file's name and title, and the headings above.
    names = models.TextField()
    heading = models.TextField(blank=True)
    body = models.TextField()

    def __str__(self) -> str:
        return f"{self.document.path}:{self.start_line}"


class ChunkVector(models.Model):
    """A passage's embedding, with KNOWLEDGE_SEMANTIC (`knowledge.semantic`): unit length,
    float32 little-endian. Deleted with its passage, so a changed note's old meaning is gone
    with its old text: by a trigger (migration 0003 says why), hence DO_NOTHING here."""

    chunk = models.OneToOneField(Chunk, on_delete=models.DO_NOTHING, primary_key=True, related_name="vector")
    vector = models.BinaryField()


class Lexeme(models.Model):
    """PostgreSQL only: how many passages hold a word (a lexeme of the `english` configuration);
    the empty lexeme's row counts every passage. Kept by triggers (migration 0004), read by
    `knowledge.sql`; a model so that `flush` empties it with the passages."""

    lexeme = models.TextField(primary_key=True)
    passages = models.IntegerField()
