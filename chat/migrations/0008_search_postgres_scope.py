"""PostgreSQL: a message's row carries its conversation and owner for the search, and the GIN
indexes keep at most a short pending list. SQLite has its own keys for this (migration 0006).

- `chat_message.search_conversation_id` and `search_owner_id`, filled by a trigger from the
  message's turn and conversation in the statement that writes the message, and kept when a
  conversation changes owner or a turn changes conversation. A search then ranks a word's
  matches without joining each to its turn and conversation by text keys (up to 1,000 joins a
  word), and reads the newest conversations' messages by one index.
- The messages' GIN index holds the owner too (btree_gin, a contrib extension; without it the
  index holds the words alone, and the owner is checked on the row): one user's search finds
  only their own matches in the index.
- GIN's fast update puts new entries in a pending list that every search reads whole, until a
  vacuum or the insert that fills it (`gin_pending_list_limit`, 4 MB by default) merges it: after
  200,000 messages were written, 2.7 MB of pending entries (343 pages) made a rare word's lookup
  read 347 pages instead of a few, and every title of 10,000 conversations was pending. The
  messages' list is now at most 256 kB (32 pages, which searches do not measurably feel), so a
  running turn's heartbeat, which rewrites its answer, still appends instead of updating the
  posting list of each of its words (written through, rewriting a 500-word answer cost 2.4-3.4 ms
  of server CPU; with the short list 1.3-1.7 ms, its merges included); titles, written once or
  twice, are written through.
"""

from django.db import DatabaseError, migrations, transaction

SCOPE_FUNCTIONS = [
    # A message inserted before its turn or its turn's conversation (the foreign keys are
    # deferred; the join finds no row for either) would be found by nobody: refused instead. The
    # error names the turn only (the text of a function already created on some databases).
    """CREATE FUNCTION chat_message_search_scope() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        SELECT t.conversation_id, c.owner_id INTO NEW.search_conversation_id, NEW.search_owner_id
        FROM chat_turn t JOIN chat_conversation c ON c.id = t.conversation_id WHERE t.id = NEW.turn_id;
        IF NEW.search_conversation_id IS NULL THEN
            RAISE EXCEPTION USING MESSAGE = 'chat_message written before its turn ' || NEW.turn_id;
        END IF;
        RETURN NEW;
    END $$""",
    """CREATE FUNCTION chat_turn_search_scope() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE chat_message SET search_conversation_id = NEW.conversation_id,
               search_owner_id = (SELECT owner_id FROM chat_conversation WHERE id = NEW.conversation_id)
        WHERE turn_id = NEW.id;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION chat_conversation_search_owner() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE chat_message SET search_owner_id = NEW.owner_id WHERE search_conversation_id = NEW.id;
        RETURN NULL;
    END $$""",
]
SCOPE_TRIGGERS = [
    """CREATE TRIGGER chat_message_search_scope BEFORE INSERT OR UPDATE OF turn_id ON chat_message
        FOR EACH ROW EXECUTE FUNCTION chat_message_search_scope()""",
    """CREATE TRIGGER chat_turn_search_scope AFTER UPDATE OF conversation_id ON chat_turn FOR EACH ROW
        WHEN (OLD.conversation_id IS DISTINCT FROM NEW.conversation_id) EXECUTE FUNCTION chat_turn_search_scope()""",
    """CREATE TRIGGER chat_conversation_search_owner AFTER UPDATE OF owner_id ON chat_conversation FOR EACH ROW
        WHEN (OLD.owner_id IS DISTINCT FROM NEW.owner_id) EXECUTE FUNCTION chat_conversation_search_owner()""",
]
FORWARD = [
    # The index goes first: filling the new columns rewrites every row, and would update it.
    "DROP INDEX chat_message_search",
    "ALTER TABLE chat_message ADD COLUMN search_conversation_id varchar(64), ADD COLUMN search_owner_id integer",
    """UPDATE chat_message m SET search_conversation_id = t.conversation_id, search_owner_id = c.owner_id
        FROM chat_turn t JOIN chat_conversation c ON c.id = t.conversation_id WHERE t.id = m.turn_id""",
    "CREATE INDEX chat_message_search_conversation ON chat_message (search_conversation_id)",
    *SCOPE_FUNCTIONS,
    *SCOPE_TRIGGERS,
    "ALTER INDEX chat_conversation_search SET (fastupdate = off)",
    "SELECT gin_clean_pending_list('chat_conversation_search')",
]
OWNER_AND_WORDS = "CREATE INDEX chat_message_search ON chat_message USING GIN (search_owner_id, search)"
WORDS = "CREATE INDEX chat_message_search ON chat_message USING GIN (search)"
BACKWARD = [
    "ALTER INDEX chat_conversation_search RESET (fastupdate)",
    "DROP TRIGGER chat_conversation_search_owner ON chat_conversation",
    "DROP TRIGGER chat_turn_search_scope ON chat_turn",
    "DROP TRIGGER chat_message_search_scope ON chat_message",
    "DROP FUNCTION chat_conversation_search_owner()",
    "DROP FUNCTION chat_turn_search_scope()",
    "DROP FUNCTION chat_message_search_scope()",
    "DROP INDEX chat_message_search",
    "ALTER TABLE chat_message DROP COLUMN search_owner_id, DROP COLUMN search_conversation_id",
    WORDS,
]


def _btree_gin(schema_editor) -> bool:
    """Whether btree_gin is installed, or could be now: a contrib extension, trusted (a database
    owner may create it) since PostgreSQL 13, but not on every server."""
    try:
        with transaction.atomic(using=schema_editor.connection.alias):  # a savepoint: a refusal undoes only this
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    except DatabaseError:
        return False
    return True


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for statement in FORWARD:
        schema_editor.execute(statement)
    index = OWNER_AND_WORDS if _btree_gin(schema_editor) else WORDS
    schema_editor.execute(f"{index} WITH (gin_pending_list_limit = 256)")


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in BACKWARD:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("chat", "0007_imported_replay_turns")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
