"""Writing imported conversations (a service): each in a transaction of its own, so a conversation
is there whole or not at all; each under a new id, so an import never overwrites anything, and
the caller's (AUTH_MODE=django).

What the model is replayed on the next turn: an export of ours brings its own replay items, each
stored with the turn it belongs to, as the file names it (a `regenerate` or `edit` replays the
branch's turns only); for the others they are made from the messages as the journal makes them
for a turn that did not finish (`chat.turn.journal.Journal.replay_items`): the user's text, the
assistant's text, each tool call with its output. The usage ledger is this server's spending: an
export's usage rows are not imported.
"""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from chat.archive.formats import ImportedConversation, ImportedTurn
from chat.catalog import catalog_get
from chat.models import Conversation, Message, MessageKind, SessionItem, Turn, TurnStatus
from chat.store.services import title_from_message

TITLE_CHARS = 200
_STATUSES = {status.value for status in TurnStatus} - {TurnStatus.STREAMING, TurnStatus.WAITING}


def _model(requested: str) -> str:
    catalog = catalog_get()
    model = catalog.get(requested) if requested else None
    return model.id if model is not None and model.usable else catalog.usable_default()


def _aware(moment: datetime | None) -> datetime | None:
    """A time without a zone is taken as UTC."""
    if moment is None or timezone.is_aware(moment):
        return moment
    return timezone.make_aware(moment, UTC)


def _times(turns: list[ImportedTurn], now: datetime) -> list[datetime]:
    """When each turn was made: as the file says while that keeps them in order (the display
    is ordered by it), else just after the one before."""
    times: list[datetime] = []
    for turn in turns:
        moment = _aware(turn.created_at)
        if moment is None or (times and moment <= times[-1]) or moment > now:
            moment = times[-1] + timedelta(milliseconds=1) if times else now - timedelta(seconds=len(turns))
        times.append(moment)
    return times


def _replay(turn: ImportedTurn) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [{"role": "user", "content": turn.user}]
    for entry in turn.entries:
        if not entry.tool_name:
            items.append(
                {
                    "type": "message",
                    "role": "assistant",
                    "id": f"msg_{uuid.uuid4().hex}",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": entry.content, "annotations": []}],
                }
            )
            continue
        call_id = entry.call_id or f"call_{uuid.uuid4().hex[:24]}"
        arguments = json.dumps(entry.arguments if entry.arguments is not None else {})
        items.append({"type": "function_call", "call_id": call_id, "name": entry.tool_name, "arguments": arguments})
        items.append({"type": "function_call_output", "call_id": call_id, "output": entry.result or ""})
    return items


def _user_text(item: dict[str, Any]) -> str | None:
    """A user message item's text (the SDK's input item, a string or input_text parts), else None."""
    if item.get("role") != "user" or item.get("type", "message") != "message":
        return None
    content = item.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def _replay_turns(replay: list[dict[str, Any]], turns: list[ImportedTurn]) -> list[int | None]:
    """Which turn each replay item of an older export of ours (one without `replay_turn_ids`)
    belongs to (its index; None: before the first turn's message). The file keeps them in one
    list; the model must be replayed a branch's turns only (chat/store/tree.py), so each item is
    stored with its turn: a turn's items run from the user's message, its first, to the next
    turn's. A user message is matched to a later turn that sent that text.

    A turn may have left no item: one recovered from an empty log (its worker died before its
    first flush; a failed, cancelled or interrupted turn otherwise always has its user item,
    `Journal.flush` rebuilds them). Such a turn has no entries either, so of a row of turns that
    sent the same text, the message goes to the first whose having entries matches whether the
    model's output follows it, leaving enough of the row to the same text sent again next."""
    said = [_user_text(item) for item in replay]
    owners: list[int | None] = []
    current: int | None = None
    for index, text in enumerate(said):
        if text is not None:
            current = _turn_of(said, index, turns, current)
        owners.append(current)
    return owners


def _turn_of(said: list[str | None], index: int, turns: list[ImportedTurn], current: int | None) -> int | None:
    """The turn of the user message `said[index]`, after turn `current` (kept when none fits)."""
    text = said[index]
    start = 0 if current is None else current + 1
    first = next((i for i in range(start, len(turns)) if turns[i].user == text), None)
    if first is None:
        return current
    row = list(itertools.takewhile(lambda i: turns[i].user == text, range(first, len(turns))))
    again = 0  # the same text sent next, with no other user message between: later turns of the row
    for later in itertools.islice(said, index + 1, None):
        if later is not None and later != text:
            break
        again += later is not None
    fitting = row[: max(1, len(row) - again)]
    answered = index + 1 < len(said) and said[index + 1] is None
    return next((i for i in fitting if bool(turns[i].entries) == answered), fitting[0])


@transaction.atomic
def conversation_import(*, conversation: ImportedConversation, owner_id: int | None = None) -> str:
    """Store one imported conversation; its new id."""
    now = timezone.now()
    first = conversation.turns[0].user
    row = Conversation.objects.create(
        id=uuid.uuid4().hex,
        owner_id=owner_id,
        model=_model(conversation.model),
        title=(conversation.title.strip() or title_from_message(first))[:TITLE_CHARS],
    )
    times = _times(conversation.turns, now)
    turns = [
        Turn(
            conversation=row,
            model=turn.model or row.model,
            status=turn.status if turn.status in _STATUSES else TurnStatus.INTERRUPTED,
            finish_reason=turn.finish_reason,
            error_code=turn.error_code,
            error=turn.error,
            finished_at=moment,
        )
        for turn, moment in zip(conversation.turns, times, strict=True)
    ]
    for previous, turn in itertools.pairwise(turns):  # one path, each turn after the one before
        turn.parent = previous
    Turn.objects.bulk_create(turns)
    for turn, moment in zip(turns, times, strict=True):
        turn.created_at = turn.heartbeat_at = moment
    Turn.objects.bulk_update(turns, ["created_at", "heartbeat_at"])  # bulk_update keeps them (auto_now_add)
    messages, replay = [], []
    for turn, imported in zip(turns, conversation.turns, strict=True):
        messages.append(Message(turn=turn, position=0, kind=MessageKind.USER, content=imported.user))
        for position, entry in enumerate(imported.entries, start=1):
            if entry.tool_name:
                messages.append(
                    Message(
                        turn=turn,
                        position=position,
                        kind=MessageKind.TOOL,
                        content=entry.tool_name,
                        call_id=entry.call_id,
                        tool_name=entry.tool_name,
                        arguments=entry.arguments,
                        tool_result=entry.result,
                        ok=entry.ok,
                    )
                )
            else:
                messages.append(
                    Message(turn=turn, position=position, kind=MessageKind.ASSISTANT, content=entry.content)
                )
        if conversation.replay is None:
            replay += [
                SessionItem(conversation=row, turn=turn, data=item, synthetic=True) for item in _replay(imported)
            ]
    if conversation.replay is not None:
        owners = conversation.replay_turns
        if owners is None:
            owners = _replay_turns(conversation.replay, conversation.turns)
        replay = [
            SessionItem(conversation=row, turn=turns[owner] if owner is not None else None, data=item)
            for item, owner in zip(conversation.replay, owners, strict=True)
        ]
    Message.objects.bulk_create(messages, batch_size=500)
    SessionItem.objects.bulk_create(replay, batch_size=500)
    created = _aware(conversation.created_at)
    Conversation.objects.filter(id=row.id).update(
        created_at=min(created or times[0], times[0]), active_leaf_id=turns[-1].id
    )
    return row.id
