"""The full-text index, in the database's own dialect.

SQLite: an FTS5 table over `knowledge_chunk` (external content: the text is stored once), kept
in step by triggers, ranked by BM25 with the file's names weighing 4 and headings 2 against
the body's 1. PostgreSQL: a generated `tsvector` column (names weight A, headings B, body D)
with a GIN index. Both stem English words (porter / the `english` configuration).
"""

from django.db import migrations

SQLITE_FORWARD = [
    """CREATE VIRTUAL TABLE knowledge_chunk_fts USING fts5(
        names, heading, body, content='knowledge_chunk', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2')""",
    "INSERT INTO knowledge_chunk_fts(knowledge_chunk_fts, rank) VALUES ('rank', 'bm25(4.0, 2.0, 1.0)')",
    """CREATE TRIGGER knowledge_chunk_fts_insert AFTER INSERT ON knowledge_chunk BEGIN
        INSERT INTO knowledge_chunk_fts(rowid, names, heading, body)
        VALUES (new.id, new.names, new.heading, new.body);
    END""",
    """CREATE TRIGGER knowledge_chunk_fts_delete AFTER DELETE ON knowledge_chunk BEGIN
        INSERT INTO knowledge_chunk_fts(knowledge_chunk_fts, rowid, names, heading, body)
        VALUES ('delete', old.id, old.names, old.heading, old.body);
    END""",
    """CREATE TRIGGER knowledge_chunk_fts_update AFTER UPDATE ON knowledge_chunk BEGIN
        INSERT INTO knowledge_chunk_fts(knowledge_chunk_fts, rowid, names, heading, body)
        VALUES ('delete', old.id, old.names, old.heading, old.body);
        INSERT INTO knowledge_chunk_fts(rowid, names, heading, body)
        VALUES (new.id, new.names, new.heading, new.body);
    END""",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER knowledge_chunk_fts_update",
    "DROP TRIGGER knowledge_chunk_fts_delete",
    "DROP TRIGGER knowledge_chunk_fts_insert",
    "DROP TABLE knowledge_chunk_fts",
]
POSTGRES_FORWARD = [
    """ALTER TABLE knowledge_chunk ADD COLUMN search tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', names), 'A')
        || setweight(to_tsvector('english', heading), 'B')
        || setweight(to_tsvector('english', body), 'D')
    ) STORED""",
    "CREATE INDEX knowledge_chunk_search ON knowledge_chunk USING GIN (search)",
]
POSTGRES_BACKWARD = [
    "DROP INDEX knowledge_chunk_search",
    "ALTER TABLE knowledge_chunk DROP COLUMN search",
]
STATEMENTS = {"sqlite": (SQLITE_FORWARD, SQLITE_BACKWARD), "postgresql": (POSTGRES_FORWARD, POSTGRES_BACKWARD)}


def _run(direction: int):
    def run(apps, schema_editor):
        vendor = schema_editor.connection.vendor
        if vendor not in STATEMENTS:
            raise RuntimeError(f"The knowledge base supports SQLite and PostgreSQL, not {vendor}")
        for statement in STATEMENTS[vendor][direction]:
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("knowledge", "0001_initial")]

    operations = [migrations.RunPython(_run(0), _run(1), elidable=False)]
