"""PostgreSQL: how many passages hold each word, kept by the database as passages come and go.

A search first asks how many passages hold each of its words (`knowledge.search._rows` leaves
out the common ones). PostgreSQL answered that by reading up to 1,000 matching rows per word
from the table (a GIN index cannot count without them): 17 ms of a 24 ms search at 10,050
notes. Here statement triggers keep a count per lexeme (`knowledge_lexeme`; the row of the
empty lexeme counts every passage), so a search reads one row per word. The indexer writes
passages in batches and never updates one, so the triggers run once per batch. SQLite's FTS5
counts from its own index, and needs none of this.
"""

from django.db import migrations, models

LEXEMES = "SELECT unnest(tsvector_to_array(search)) AS lexeme FROM {rows} UNION ALL SELECT '' FROM {rows}"
POSTGRES_FORWARD = [
    f"""CREATE FUNCTION knowledge_lexeme_add() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO knowledge_lexeme (lexeme, passages)
        SELECT lexeme, count(*) FROM ({LEXEMES.format(rows="added")}) words GROUP BY lexeme
        ON CONFLICT (lexeme) DO UPDATE SET passages = knowledge_lexeme.passages + excluded.passages;
        RETURN NULL;
    END $$""",
    f"""CREATE FUNCTION knowledge_lexeme_remove() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE knowledge_lexeme l SET passages = l.passages - g.n
        FROM (SELECT lexeme, count(*) AS n FROM ({LEXEMES.format(rows="gone")}) words GROUP BY lexeme) g
        WHERE l.lexeme = g.lexeme;
        DELETE FROM knowledge_lexeme
        WHERE passages <= 0 AND lexeme <> '' AND lexeme IN (SELECT unnest(tsvector_to_array(search)) FROM gone);
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER knowledge_lexeme_add AFTER INSERT ON knowledge_chunk
        REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION knowledge_lexeme_add()""",
    """CREATE TRIGGER knowledge_lexeme_remove AFTER DELETE ON knowledge_chunk
        REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION knowledge_lexeme_remove()""",
    f"""INSERT INTO knowledge_lexeme (lexeme, passages)
        SELECT lexeme, count(*) FROM ({LEXEMES.format(rows="knowledge_chunk")}) words GROUP BY lexeme""",
]
POSTGRES_BACKWARD = [
    "DROP TRIGGER knowledge_lexeme_remove ON knowledge_chunk",
    "DROP TRIGGER knowledge_lexeme_add ON knowledge_chunk",
    "DROP FUNCTION knowledge_lexeme_remove()",
    "DROP FUNCTION knowledge_lexeme_add()",
]


def _run(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for statement in statements:
                schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("knowledge", "0003_chunk_vectors")]

    operations = [
        migrations.CreateModel(
            name="Lexeme",
            fields=[
                ("lexeme", models.TextField(primary_key=True, serialize=False)),
                ("passages", models.IntegerField()),
            ],
        ),
        migrations.RunPython(_run(POSTGRES_FORWARD), _run(POSTGRES_BACKWARD), elidable=False),
    ]
