"""Full-text search over conversations: titles and every message's text, in the database's own
dialect, kept in step by the database itself in the transaction that writes the rows (no copy
that can drift, whatever writes them: the ORM, `chat.store.sql`, an import).

SQLite: an FTS5 table over `chat_message` (external content: the text is stored once; columns
`content` for the user's and the assistant's text, `tool_result` for tools' results) kept by
triggers. Titles get an FTS5 table of their own, keyed through `chat_conversation_search_key`:
a conversation's primary key is text, and the implicit rowid of such a table may change on
VACUUM, so it cannot key an external-content index. Both stem English words (porter).

PostgreSQL: generated `tsvector` columns (`english`) on `chat_message` and `chat_conversation`,
each with a GIN index. A tool's result is indexed up to its first 100,000 characters: a
`tsvector` holds at most 1 MB, and a longer one would make the message's write fail. File
names and paths are indexed as their words (PostgreSQL's parser would keep them whole).

`chat.search` runs the queries (`chat.search_sqlite` and `chat.search_postgres` have their text).

A later migration that makes SQLite copy `chat_message` or `chat_conversation` into a new table
(Django does for most field changes; adding a nullable column is an ALTER TABLE) drops their
triggers with the old table: it must create the triggers above again. The search tests fail
if it does not.
"""

from django.db import migrations

TOKENIZE = "tokenize='porter unicode61 remove_diacritics 2'"
SQLITE_FORWARD = [
    f"""CREATE VIRTUAL TABLE chat_message_fts USING fts5(
        content, tool_result, content='chat_message', content_rowid='id', {TOKENIZE})""",
    """CREATE TRIGGER chat_message_fts_insert AFTER INSERT ON chat_message BEGIN
        INSERT INTO chat_message_fts(rowid, content, tool_result) VALUES (new.id, new.content, new.tool_result);
    END""",
    """CREATE TRIGGER chat_message_fts_delete AFTER DELETE ON chat_message BEGIN
        INSERT INTO chat_message_fts(chat_message_fts, rowid, content, tool_result)
        VALUES ('delete', old.id, old.content, old.tool_result);
    END""",
    """CREATE TRIGGER chat_message_fts_update AFTER UPDATE OF content, tool_result ON chat_message BEGIN
        INSERT INTO chat_message_fts(chat_message_fts, rowid, content, tool_result)
        VALUES ('delete', old.id, old.content, old.tool_result);
        INSERT INTO chat_message_fts(rowid, content, tool_result) VALUES (new.id, new.content, new.tool_result);
    END""",
    "INSERT INTO chat_message_fts(chat_message_fts) VALUES ('rebuild')",
    """CREATE TABLE chat_conversation_search_key (
        id INTEGER PRIMARY KEY, conversation_id varchar(64) NOT NULL UNIQUE)""",
    f"CREATE VIRTUAL TABLE chat_conversation_fts USING fts5(title, {TOKENIZE})",
    """CREATE TRIGGER chat_conversation_fts_insert AFTER INSERT ON chat_conversation BEGIN
        INSERT INTO chat_conversation_search_key(conversation_id) VALUES (new.id);
        INSERT INTO chat_conversation_fts(rowid, title)
        VALUES ((SELECT id FROM chat_conversation_search_key WHERE conversation_id = new.id), new.title);
    END""",
    """CREATE TRIGGER chat_conversation_fts_update AFTER UPDATE OF title ON chat_conversation BEGIN
        UPDATE chat_conversation_fts SET title = new.title
        WHERE rowid = (SELECT id FROM chat_conversation_search_key WHERE conversation_id = new.id);
    END""",
    """CREATE TRIGGER chat_conversation_fts_delete AFTER DELETE ON chat_conversation BEGIN
        DELETE FROM chat_conversation_fts
        WHERE rowid = (SELECT id FROM chat_conversation_search_key WHERE conversation_id = old.id);
        DELETE FROM chat_conversation_search_key WHERE conversation_id = old.id;
    END""",
    "INSERT INTO chat_conversation_search_key(conversation_id) SELECT id FROM chat_conversation",
    """INSERT INTO chat_conversation_fts(rowid, title)
        SELECT k.id, c.title FROM chat_conversation c JOIN chat_conversation_search_key k ON k.conversation_id = c.id""",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER chat_conversation_fts_delete",
    "DROP TRIGGER chat_conversation_fts_update",
    "DROP TRIGGER chat_conversation_fts_insert",
    "DROP TABLE chat_conversation_fts",
    "DROP TABLE chat_conversation_search_key",
    "DROP TRIGGER chat_message_fts_update",
    "DROP TRIGGER chat_message_fts_delete",
    "DROP TRIGGER chat_message_fts_insert",
    "DROP TABLE chat_message_fts",
]
# PostgreSQL's parser reads `notes-2024.csv` or `/srv/app/main.py` as one file or path token,
# where FTS5 (and the search's terms) see words: '.', '/' and '\' become spaces first.
WORDS_ONLY = "translate({}, './\\', '   ')"
POSTGRES_FORWARD = [
    f"""ALTER TABLE chat_message ADD COLUMN search tsvector GENERATED ALWAYS AS (
        to_tsvector('english', {WORDS_ONLY.format("content")})
        || to_tsvector('english', {WORDS_ONLY.format("left(coalesce(tool_result, ''), 100000)")})
    ) STORED""",
    "CREATE INDEX chat_message_search ON chat_message USING GIN (search)",
    f"""ALTER TABLE chat_conversation ADD COLUMN search tsvector
        GENERATED ALWAYS AS (to_tsvector('english', {WORDS_ONLY.format("title")})) STORED""",
    "CREATE INDEX chat_conversation_search ON chat_conversation USING GIN (search)",
]
POSTGRES_BACKWARD = [
    "DROP INDEX chat_conversation_search",
    "ALTER TABLE chat_conversation DROP COLUMN search",
    "DROP INDEX chat_message_search",
    "ALTER TABLE chat_message DROP COLUMN search",
]
STATEMENTS = {"sqlite": (SQLITE_FORWARD, SQLITE_BACKWARD), "postgresql": (POSTGRES_FORWARD, POSTGRES_BACKWARD)}


def _run(direction: int):
    def run(apps, schema_editor):
        vendor = schema_editor.connection.vendor
        if vendor not in STATEMENTS:
            raise RuntimeError(f"Conversation search supports SQLite and PostgreSQL, not {vendor}")
        for statement in STATEMENTS[vendor][direction]:
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("chat", "0002_conversation_owner_usagerecord_user")]

    operations = [migrations.RunPython(_run(0), _run(1), elidable=False)]
