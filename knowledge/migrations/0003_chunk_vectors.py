"""Passages' vectors (KNOWLEDGE_SEMANTIC), deleted with their passage by the database itself.

Django's own cascade would select every passage of a deleted note before deleting it (it can
no longer delete them in one statement once another model points at them: 2.2x slower for
10,000 notes, semantic search on or off). So the model says DO_NOTHING and a trigger deletes
the vectors: SQLite's beside the full-text triggers, PostgreSQL's once per statement.
"""

import django.db.models.deletion
from django.db import migrations, models

SQLITE_FORWARD = [
    """CREATE TRIGGER knowledge_chunk_vector_delete AFTER DELETE ON knowledge_chunk BEGIN
        DELETE FROM knowledge_chunkvector WHERE chunk_id = old.id;
    END""",
]
SQLITE_BACKWARD = ["DROP TRIGGER knowledge_chunk_vector_delete"]
POSTGRES_FORWARD = [
    """CREATE FUNCTION knowledge_chunk_vector_delete() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM knowledge_chunkvector v USING gone WHERE v.chunk_id = gone.id;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER knowledge_chunk_vector_delete AFTER DELETE ON knowledge_chunk
        REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION knowledge_chunk_vector_delete()""",
]
POSTGRES_BACKWARD = [
    "DROP TRIGGER knowledge_chunk_vector_delete ON knowledge_chunk",
    "DROP FUNCTION knowledge_chunk_vector_delete()",
]
STATEMENTS = {"sqlite": (SQLITE_FORWARD, SQLITE_BACKWARD), "postgresql": (POSTGRES_FORWARD, POSTGRES_BACKWARD)}


def _run(direction: int):
    def run(apps, schema_editor):
        for statement in STATEMENTS[schema_editor.connection.vendor][direction]:
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("knowledge", "0002_full_text_index")]

    operations = [
        migrations.CreateModel(
            name="ChunkVector",
            fields=[
                (
                    "chunk",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        primary_key=True,
                        related_name="vector",
                        serialize=False,
                        to="knowledge.chunk",
                    ),
                ),
                ("vector", models.BinaryField()),
            ],
        ),
        migrations.RunPython(_run(0), _run(1), elidable=False),
    ]
