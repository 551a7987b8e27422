"""PostgreSQL: the planner's statistics of the messages' words keep 10,000 common words (down to
about 1 message in 3,000) instead of 1,000 (down to 1 in 100): a conversation search reads how
common its words are from them (`chat.search_postgres.POSTGRES_FREQUENCIES`) instead of counting
rows. ANALYZE (autovacuum's, after a tenth of the table changed) then samples 300,000 rows."""

from django.db import migrations

FORWARD = ["ALTER TABLE chat_message ALTER COLUMN search SET STATISTICS 1000", "ANALYZE chat_message"]
BACKWARD = ["ALTER TABLE chat_message ALTER COLUMN search SET STATISTICS -1"]


def _run(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for statement in statements:
                schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("chat", "0004_usagerecord_kind")]

    operations = [migrations.RunPython(_run(FORWARD), _run(BACKWARD), elidable=False)]
