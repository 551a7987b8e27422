"""Export: a conversation with everything, as JSON (to keep or import again) or Markdown (to read).

The JSON (`FORMAT`, version 1) holds, per conversation: its turns (status, error, usage rows),
its messages in order, each with an `id` and a `parent_id` (the message before it: a list now,
and the same fields can describe a tree once conversations branch), tool entries with their
arguments, result, ok and duration, and `replay`, the items the model is replayed, so an import
gives the model exactly the history it had, with `replay_turn_ids`, each item's turn (added
later: an import of an older file finds the turns from the items' user messages). A branched
conversation (chat/store/tree.py) is exported as its active path, what its user sees: its turns,
messages and replay items. Ledger rows of the conversation that belong to none of those turns (a
model-made title's, other branches') are under `usage`, so `usage_totals` is what the whole
conversation cost.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from django.db.models import Prefetch, Q
from django.utils import timezone

from chat.models import Conversation, Message, MessageKind, SessionItem, Turn, UsageRecord
from chat.store.tree import tree_load
from chat.usage import usage_sum
from chat.visibility import owned

FORMAT = "dreamytin.conversations"
VERSION = 1
_USAGE_FIELDS = (
    "kind",
    "model",
    "provider",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "latency_ms",
    "ttft_ms",
    "estimated",
)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _usage_row(row: UsageRecord) -> dict[str, Any]:
    body = {name: getattr(row, name) for name in _USAGE_FIELDS}
    cost = row.cost_usd
    return {**body, "cost_usd": float(cost) if isinstance(cost, Decimal) else None, "created_at": _iso(row.created_at)}


def _message(message: Message, turn: Turn, parent_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(message.pk),
        "parent_id": parent_id,
        "turn_id": str(turn.id),
        "role": message.kind,
        "content": message.content,
        "created_at": _iso(turn.created_at),
    }
    if message.kind == MessageKind.TOOL:
        body["tool"] = {
            "call_id": message.call_id,
            "name": message.tool_name,
            "arguments": message.arguments,
            "result": message.tool_result,
            "ok": message.ok,
            "duration_ms": message.duration_ms,
        }
    return body


def conversation_export(conversation: Conversation) -> dict[str, Any]:
    """One conversation as the JSON format holds it (its turns and messages prefetched or not)."""
    path = [node.id for node in tree_load(conversation_id=conversation.id).path()]
    turns = (
        conversation.turns.filter(id__in=path)
        .order_by("created_at")
        .prefetch_related(
            Prefetch("messages", queryset=Message.objects.order_by("position")),
            Prefetch("usage", queryset=UsageRecord.objects.order_by("created_at", "id")),
        )
    )
    messages: list[dict[str, Any]] = []
    turn_bodies: list[dict[str, Any]] = []
    parent_id: str | None = None
    rows: list[UsageRecord] = []
    for turn in turns:
        for message in turn.messages.all():
            messages.append(_message(message, turn, parent_id))
            parent_id = messages[-1]["id"]
        usage = list(turn.usage.all())
        rows += usage
        turn_bodies.append(
            {
                "id": str(turn.id),
                "model": turn.model,
                "status": turn.status,
                "finish_reason": turn.finish_reason,
                "error_code": turn.error_code,
                "error": turn.error,
                "created_at": _iso(turn.created_at),
                "finished_at": _iso(turn.finished_at),
                "usage": [_usage_row(row) for row in usage],
            }
        )
    other = list(
        UsageRecord.objects.filter(conversation=conversation).exclude(turn__in=path).order_by("created_at", "id")
    )
    replay = SessionItem.objects.filter(Q(turn__isnull=True) | Q(turn__in=path), conversation=conversation)
    items = list(replay.order_by("id").values_list("turn_id", "data"))
    return {
        "id": conversation.id,
        "title": conversation.title,
        "model": conversation.model,
        "created_at": _iso(conversation.created_at),
        "updated_at": _iso(conversation.updated_at),
        "turns": turn_bodies,
        "messages": messages,
        "replay": [data for _, data in items],
        "replay_turn_ids": [str(turn_id) if turn_id is not None else None for turn_id, _ in items],
        "usage": [_usage_row(row) for row in other],
        "usage_totals": usage_sum(rows + other),
    }


def export_document(conversations: list[dict[str, Any]]) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "exported_at": _iso(timezone.now()), "conversations": conversations}


def conversations_export(*, owner_id: int | None) -> Iterator[dict[str, Any]]:
    """Every conversation the caller sees, oldest first, one at a time."""
    for conversation in owned(Conversation.objects, owner_id).order_by("created_at").iterator(chunk_size=100):
        yield conversation_export(conversation)


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in the text, which cannot close it."""
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}\n{text}\n{ticks}"


def conversation_markdown(body: dict[str, Any]) -> str:
    """The exported conversation to read: its messages, tools folded under their names."""
    lines = [f"# {body['title'] or 'Untitled conversation'}", "", f"*{body['model']} · {body['created_at']}*", ""]
    failed = {turn["id"]: turn for turn in body["turns"] if turn["error"]}
    last_turn = None
    for message in body["messages"]:
        if last_turn is not None and message["turn_id"] != last_turn and last_turn in failed:
            lines += [f"> **Error:** {failed[last_turn]['error']}", ""]
        last_turn = message["turn_id"]
        if message["role"] == MessageKind.TOOL:
            tool = message["tool"]
            lines += [f"<details><summary>🔧 {tool['name']}</summary>", "", _fence(str(tool["arguments"] or {}))]
            lines += ["", _fence(tool["result"] or ""), "", "</details>", ""]
        elif message["content"]:
            lines += [
                f"**{'You' if message['role'] == MessageKind.USER else 'Assistant'}:**",
                "",
                message["content"],
                "",
            ]
    if last_turn in failed:
        lines += [f"> **Error:** {failed[last_turn]['error']}", ""]
    totals = body["usage_totals"]
    cost = f", ${totals['cost_usd']:.4f}" if totals["cost_usd"] else ""
    lines.append(f"---\n*{totals['requests']} model requests, {totals['total_tokens']} tokens{cost}*")
    return "\n".join(lines) + "\n"
