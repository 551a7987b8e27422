"""SQLite: the search finds a matching message's conversation and owner without reading the
message, its turn and its conversation (three B-tree searches by text keys, 3 µs a match: 6 ms
of a search that grouped 2,000 matches).

`chat_message_search_key` maps a message's id (the FTS5 rowid) to its conversation's key in
`chat_conversation_search_key` (migration 0003), which now also holds the conversation's owner.
Both are kept by triggers in the transaction that writes the rows, as the FTS5 tables are (the
note of migration 0003 on table copies applies to these triggers too).
"""

from django.db import migrations

SQLITE_FORWARD = [
    """CREATE TABLE chat_message_search_key (
        id INTEGER PRIMARY KEY, conversation INTEGER NOT NULL)""",
    "CREATE INDEX chat_message_search_key_conversation ON chat_message_search_key (conversation)",
    """CREATE TRIGGER chat_message_search_key_insert AFTER INSERT ON chat_message BEGIN
        INSERT INTO chat_message_search_key(id, conversation)
        SELECT new.id, k.id FROM chat_turn t JOIN chat_conversation_search_key k ON k.conversation_id = t.conversation_id
        WHERE t.id = new.turn_id;
    END""",
    """CREATE TRIGGER chat_message_search_key_delete AFTER DELETE ON chat_message BEGIN
        DELETE FROM chat_message_search_key WHERE id = old.id;
    END""",
    """INSERT INTO chat_message_search_key(id, conversation)
        SELECT m.id, k.id FROM chat_message m JOIN chat_turn t ON t.id = m.turn_id
        JOIN chat_conversation_search_key k ON k.conversation_id = t.conversation_id""",
    "ALTER TABLE chat_conversation_search_key ADD COLUMN owner_id INTEGER",
    """UPDATE chat_conversation_search_key SET owner_id = (
        SELECT owner_id FROM chat_conversation c WHERE c.id = chat_conversation_search_key.conversation_id)""",
    "DROP TRIGGER chat_conversation_fts_insert",
    """CREATE TRIGGER chat_conversation_fts_insert AFTER INSERT ON chat_conversation BEGIN
        INSERT INTO chat_conversation_search_key(conversation_id, owner_id) VALUES (new.id, new.owner_id);
        INSERT INTO chat_conversation_fts(rowid, title)
        VALUES ((SELECT id FROM chat_conversation_search_key WHERE conversation_id = new.id), new.title);
    END""",
    """CREATE TRIGGER chat_conversation_search_key_owner AFTER UPDATE OF owner_id ON chat_conversation BEGIN
        UPDATE chat_conversation_search_key SET owner_id = new.owner_id WHERE conversation_id = new.id;
    END""",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER chat_conversation_search_key_owner",
    "DROP TRIGGER chat_conversation_fts_insert",
    """CREATE TRIGGER chat_conversation_fts_insert AFTER INSERT ON chat_conversation BEGIN
        INSERT INTO chat_conversation_search_key(conversation_id) VALUES (new.id);
        INSERT INTO chat_conversation_fts(rowid, title)
        VALUES ((SELECT id FROM chat_conversation_search_key WHERE conversation_id = new.id), new.title);
    END""",
    "ALTER TABLE chat_conversation_search_key DROP COLUMN owner_id",
    "DROP TRIGGER chat_message_search_key_delete",
    "DROP TRIGGER chat_message_search_key_insert",
    "DROP TABLE chat_message_search_key",
]
STATEMENTS = {"sqlite": (SQLITE_FORWARD, SQLITE_BACKWARD), "postgresql": ([], [])}


def _run(direction: int):
    def run(apps, schema_editor):
        for statement in STATEMENTS.get(schema_editor.connection.vendor, ([], []))[direction]:
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    # After every other 0006: its triggers name chat_turn, and SQLite cannot remake a table
    # (as adding a foreign key to it does) while a trigger names it.
    dependencies = [("chat", "0006_branches"), ("chat", "0006_tool_approvals")]

    operations = [migrations.RunPython(_run(0), _run(1), elidable=False)]
