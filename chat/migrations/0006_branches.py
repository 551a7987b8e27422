"""Conversations become trees (issue 30): each turn follows its `parent`, turns answering the
same user message share its `prompt_id`, and the conversation's `active_leaf` ends the path
shown and replayed. Existing conversations become one path: each turn follows the one before it
(by `created_at`), each has a user message of its own, and the last one is the active leaf."""

import importlib
import uuid

import django.db.models.deletion
from django.db import migrations, models

BATCH = 500


def _chain(apps, schema_editor):
    Conversation = apps.get_model("chat", "Conversation")
    Turn = apps.get_model("chat", "Turn")
    changed: list = []
    leaves: dict[str, uuid.UUID] = {}
    previous = None
    for turn in Turn.objects.order_by("conversation_id", "created_at", "id").only("id", "conversation_id").iterator():
        same = previous is not None and previous.conversation_id == turn.conversation_id
        turn.parent_id = previous.id if same else None
        turn.prompt_id = uuid.uuid4()  # AddField gave every row one and the same default
        changed.append(turn)
        leaves[turn.conversation_id] = turn.id
        previous = turn
        if len(changed) >= BATCH:
            Turn.objects.bulk_update(changed, ["parent", "prompt_id"])
            changed = []
    if changed:
        Turn.objects.bulk_update(changed, ["parent", "prompt_id"])
    for conversation_id, leaf in leaves.items():
        Conversation.objects.filter(id=conversation_id).update(active_leaf_id=leaf)


def _conversation_triggers_again(apps, schema_editor):
    """Adding `branched` (a column with a default) makes SQLite copy `chat_conversation`, and so
    does undoing `active_leaf` (a foreign key); a copy drops the search triggers migration 0003
    put on the table: they are made again (those still there are left as they are)."""
    if schema_editor.connection.vendor != "sqlite":
        return
    search_index = importlib.import_module("chat.migrations.0003_conversation_search_index")
    for statement in search_index.SQLITE_FORWARD:
        if statement.startswith("CREATE TRIGGER chat_conversation_"):
            schema_editor.execute(statement.replace("CREATE TRIGGER", "CREATE TRIGGER IF NOT EXISTS", 1))


class Migration(migrations.Migration):
    dependencies = [("chat", "0005_message_search_statistics")]

    operations = [
        migrations.RunPython(migrations.RunPython.noop, _conversation_triggers_again),  # undone last
        migrations.AddField(
            model_name="turn",
            name="parent",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="children",
                to="chat.turn",
            ),
        ),
        migrations.AddField(
            model_name="turn",
            name="prompt_id",
            field=models.UUIDField(default=uuid.uuid4, editable=False),
        ),
        migrations.AddField(
            model_name="conversation",
            name="active_leaf",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="chat.turn",
            ),
        ),
        migrations.AddField(model_name="conversation", name="branched", field=models.BooleanField(default=False)),
        migrations.RunPython(_conversation_triggers_again, migrations.RunPython.noop),
        migrations.RunPython(_chain, migrations.RunPython.noop),
    ]
