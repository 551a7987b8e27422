"""What a turn has shown and produced that is not yet written, and the one `flush()` that writes it.

The journal is the single owner of a turn's unsaved state: the display entries the client was
shown (text segments and tool entries, as the frontend renders them), the Agents SDK's replay
items, and the usage ledger's rows. Nothing is written per token or per tool event: the turn's
heartbeat, its end and its interruption (by another worker, from the event log) all call
`flush()`, which writes what changed since the last one in one transaction.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from chat.models import MessageKind, TurnStatus, UsageRecord
from chat.protocol import (
    ErrorEvent,
    FinalResponseStart,
    FinalStream,
    Stream,
    StreamEnd,
    ToolCall,
    ToolResult,
    TurnEvent,
    event_from_fields,
)
from chat.store import selectors, services
from chat.store.approvals import PauseWrite

CANCELLED_TOOL_OUTPUT = "Error: this tool call was stopped before it finished (the reply was cancelled or failed)."


@dataclass
class _Entry:
    """One display entry at `position` of the turn (0 is the user's message)."""

    position: int
    text: list[str] | None = None  # an assistant text segment: its pieces
    call: ToolCall | None = None  # a tool entry
    result: ToolResult | None = None
    started: float = field(default_factory=time.perf_counter)
    duration_ms: float | None = None
    version: int = 0  # bumped by every change
    saved_version: int = -1  # the version the database holds; -1: never written

    def fields(self) -> dict[str, Any]:
        if self.text is not None:
            return {"kind": MessageKind.ASSISTANT, "content": "".join(self.text)}
        assert self.call is not None
        tool = {
            "kind": MessageKind.TOOL,
            "content": self.call.tool_name,
            "call_id": self.call.call_id,
            "tool_name": self.call.tool_name,
            "arguments": self.call.arguments,
        }
        if self.result is not None:
            tool |= {"tool_result": self.result.result, "ok": self.result.ok, "duration_ms": self.duration_ms}
        return tool


class Journal:
    """`recovered`: rebuilt by another process from the event log, so rows may already exist
    for entries it thinks new (every write is then an update-or-insert)."""

    def __init__(self, *, turn_id: Any, conversation_id: str, recovered: bool = False) -> None:
        self.turn_id = turn_id
        self.conversation_id = conversation_id
        self.recovered = recovered
        self.entries: list[_Entry] = []
        self.open_text: _Entry | None = None
        self.error: ErrorEvent | None = None  # the turn's error event, once sent
        self.end: StreamEnd | None = None  # its stream_end, once sent
        self.items: list[dict[str, Any]] = []  # the SDK's replay items of this turn
        self.items_saved = 0
        self.usage: list[UsageRecord] = []
        self.usage_saved = 0
        self.closed = False  # its end is written
        self.lock = asyncio.Lock()  # one flush at a time: a heartbeat's and the end's never interleave

    # What the client was shown.

    def observe(self, event: TurnEvent) -> None:
        if isinstance(event, Stream | FinalStream):
            entry = self.open_text
            if entry is None:
                entry = self.open_text = self._entry(text=[])
            assert entry.text is not None
            entry.text.append(event.content)
            entry.version += 1
        elif isinstance(event, FinalResponseStart):
            self.open_text = None
        elif isinstance(event, ToolCall):
            self.open_text = None
            self._entry(call=event)
        elif isinstance(event, ErrorEvent):
            self.error = event
        elif isinstance(event, StreamEnd):
            self.end = event
        elif isinstance(event, ToolResult):
            for entry in self.entries:
                if entry.call is not None and entry.call.call_id == event.call_id and entry.result is None:
                    entry.result = event
                    entry.duration_ms = round((time.perf_counter() - entry.started) * 1000, 2)
                    entry.version += 1
                    break

    def _entry(self, **kwargs: Any) -> _Entry:
        entry = _Entry(position=len(self.entries) + 1, **kwargs)
        self.entries.append(entry)
        return entry

    def open_text_so_far(self) -> str:
        return "".join(self.open_text.text or []) if self.open_text is not None else ""

    def ended(self) -> services.TurnEnd | None:
        """How the turn ended, if its `stream_end` was sent (a journal rebuilt from its log)."""
        if self.end is None:
            return None
        code, error = (self.error.code, self.error.error) if self.error is not None else ("", "")
        return services.TurnEnd.of(self.end.finish_reason, error_code=code, error=error)

    def shown_anything(self) -> bool:
        return bool(self.entries)

    # What the model will be replayed, and what the turn cost.

    def items_add(self, items: list[dict[str, Any]]) -> None:
        self.items.extend(items)

    def items_unsaved(self) -> list[dict[str, Any]]:
        return self.items[self.items_saved :]

    async def items_forget(self) -> None:
        """Before a retry: forget the failed attempt's items, here and in the database."""
        del self.items[:]
        self.items_saved = 0
        await services.asession_items_delete_turn(turn_id=self.turn_id)

    def usage_add(self, row: UsageRecord) -> None:
        self.usage.append(row)

    # Writing.

    async def flush(self, end: services.TurnEnd | None = None, *, pause: PauseWrite | None = None) -> bool:
        """Write what changed since the last flush, and renew the turn's lease (`end` None) or
        end it (or, `pause`, pause it for tool approval); False if the lease was lost (another
        process ended the turn as orphaned). On failure nothing is marked saved: the next flush
        writes it again."""
        async with self.lock:
            if self.closed:
                return True  # its end was written: a late heartbeat has nothing to renew
            changed = [entry for entry in self.entries if entry.version != entry.saved_version]
            versions = [entry.version for entry in changed]
            writes = [
                services.EntryWrite(entry.position, entry.fields(), new=entry.saved_version < 0 and not self.recovered)
                for entry in changed
            ]
            items, usage = self.items[self.items_saved :], self.usage[self.usage_saved :]
            # Rebuilt from its log, a turn's items are what its sockets saw (its worker may not
            # have written the SDK's); from an empty log, nothing: keep what was saved.
            # A paused turn keeps the SDK's items: its resumed run goes on from them.
            rebuild = (
                end is not None
                and end.status != TurnStatus.WAITING
                and (end.status != TurnStatus.COMPLETE or self.recovered)
            )
            rebuild = rebuild and (bool(self.entries) or not self.recovered)
            held = await services.aturn_flush(
                turn_id=self.turn_id,
                conversation_id=self.conversation_id,
                entries=writes,
                session_items=items,
                usage_rows=usage,
                end=end,
                # Leave a history the next request can replay, whatever point the turn stopped at.
                replay_items=self.replay_items() if rebuild else None,
                pause=pause,
            )
            for entry, version in zip(changed, versions, strict=True):
                entry.saved_version = version
            self.items_saved += len(items)
            self.usage_saved += len(usage)
            self.closed = end is not None and held
            return held

    def display(self) -> list[dict[str, Any]]:
        """The entries as the frontend shows them (`GET /conversations/<id>` of a live turn)."""
        shown = []
        for entry in self.entries:
            fields = entry.fields()
            shown.append(
                selectors.display_entry(
                    kind=fields["kind"],
                    content=fields["content"],
                    tool_name=fields.get("tool_name", ""),
                    tool_result=fields.get("tool_result"),
                )
            )
        if self.error is not None:  # its own entry, as the frontend shows it (PROTOCOL.md)
            shown.append(selectors.error_entry(self.error.error))
        return [entry for entry in shown if entry is not None]

    def replay_items(self) -> list[dict[str, Any]]:
        """The turn as the model should remember it when it did not finish: what the user saw,
        every tool call with its output (a synthetic one where it had none)."""
        items: list[dict[str, Any]] = []
        for entry in self.entries:
            if entry.text is not None:
                # The SDK's own shape for model output, so a following tool call merges into
                # the same assistant message on replay, as after a completed step.
                items.append(
                    {
                        "type": "message",
                        "role": "assistant",
                        "id": f"msg_{uuid.uuid4().hex}",
                        "status": "completed",
                        "content": [{"type": "output_text", "text": "".join(entry.text), "annotations": []}],
                    }
                )
                continue
            assert entry.call is not None
            output = entry.result.result if entry.result is not None else CANCELLED_TOOL_OUTPUT
            call_id = entry.call.call_id
            arguments = json.dumps(entry.call.arguments)
            items.append(
                {"type": "function_call", "call_id": call_id, "name": entry.call.tool_name, "arguments": arguments}
            )
            items.append({"type": "function_call_output", "call_id": call_id, "output": output})
        return items


def journal_from_frames(
    *, turn_id: Any, conversation_id: str, frames: list[str], saved: list[UsageRecord] | None = None
) -> Journal:
    """A turn's journal rebuilt from the frames its sockets were sent (its event log). With
    `saved` (its ledger rows), a paused turn's, whose pause wrote all of it: what it had is
    saved, and what follows is new."""
    journal = Journal(turn_id=turn_id, conversation_id=conversation_id, recovered=saved is None)
    for frame in frames:
        event = event_from_fields(json.loads(frame))
        if event is not None:
            journal.observe(event)
    if saved is not None:
        for entry in journal.entries:
            entry.saved_version = entry.version
        journal.usage = list(saved)
        journal.usage_saved = len(saved)
    return journal
