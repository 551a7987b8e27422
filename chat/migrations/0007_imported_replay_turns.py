"""The replay items an import of our export stored with no turn (issue 33) get their turns.

Items of no turn are replayed on every branch (chat/store/services.py `path_items`): after such
an import, a `regenerate` of the last reply sent the model the old answer too, and an `edit`
the whole history. As `chat.archive.imports` stored them when this was written: a turn's items
run from the user's message, its first, to the next turn's; a user message goes to the next
turn (by `created_at`) that sent that text. Items before the first such message keep no turn.
(The import now reads each item's turn from the file, or of a row of turns that sent the same
text prefers the one whose entries fit: a turn recovered from an empty log left no item.)"""

from django.db import migrations

BATCH = 500


def _user_text(data):
    """A user message item's text (a string or input_text parts), else None."""
    if not isinstance(data, dict) or data.get("role") != "user" or data.get("type", "message") != "message":
        return None
    content = data.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def _assign(apps, schema_editor):
    SessionItem = apps.get_model("chat", "SessionItem")
    Turn = apps.get_model("chat", "Turn")
    Message = apps.get_model("chat", "Message")
    conversations = (
        SessionItem.objects.filter(turn__isnull=True).order_by().values_list("conversation_id", flat=True).distinct()
    )
    for conversation_id in list(conversations):
        turns = list(
            Turn.objects.filter(conversation_id=conversation_id).order_by("created_at", "id").values_list("id", flat=True)
        )
        asked = dict(
            Message.objects.filter(turn__conversation_id=conversation_id, position=0).values_list("turn_id", "content")
        )
        texts = [asked.get(turn_id) for turn_id in turns]
        current = None
        changed = []
        items = SessionItem.objects.filter(conversation_id=conversation_id, turn__isnull=True).order_by("id")
        for item in items.only("id", "data"):
            said = _user_text(item.data)
            if said is not None:
                start = 0 if current is None else current + 1
                current = next((i for i in range(start, len(turns)) if texts[i] == said), current)
            if current is not None:
                item.turn_id = turns[current]
                changed.append(item)
        SessionItem.objects.bulk_update(changed, ["turn"], batch_size=BATCH)


class Migration(migrations.Migration):
    dependencies = [("chat", "0006_search_speed")]

    # Undone, the items keep their turns, and the code before reads them as any turn's items
    # (services.path_items already replayed an item only when its turn is on the path, since
    # conversations branch): on an imported conversation's active path, where all its turns
    # are, the same items as before this; on a branch off it, the branch's only, which is right.
    operations = [migrations.RunPython(_assign, migrations.RunPython.noop)]
