"""Persist what the client is shown, as it is shown: text segments when they end (and their
partial text with each heartbeat), tool entries when they start and finish. No write per token."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from chat.store import services
from chat.models import MessageKind
from chat.protocol import FinalResponseStart, FinalStream, Stream, ToolCall, ToolResult, TurnEvent

CANCELLED_TOOL_OUTPUT = "Error: this tool call was stopped before it finished (the reply was cancelled or failed)."


@dataclass
class _ShownTool:
    call: ToolCall
    result: ToolResult | None = None


class TurnRecorder:
    def __init__(self, *, turn_id: Any) -> None:
        self.turn_id = turn_id
        self.position = 0  # 0 is the user's message, stored by `turn_start`
        self.text: list[str] = []
        self.text_position: int | None = None
        self.text_saved = False  # a heartbeat took part of the open segment to save
        self.tool_positions: dict[str, tuple[int, float]] = {}
        # What the client was shown, in order: text segments (their pieces, the same lists as
        # `text` while they are open) and tool calls with their results.
        self.shown: list[list[str] | _ShownTool] = []

    async def observe(self, event: TurnEvent) -> None:
        if isinstance(event, Stream | FinalStream):
            if self.text_position is None:
                self.position += 1
                self.text_position = self.position
                self.shown.append(self.text)
            self.text.append(event.content)
        elif isinstance(event, FinalResponseStart):
            await self.flush_text()
        elif isinstance(event, ToolCall):
            await self.flush_text()
            self.shown.append(_ShownTool(call=event))
            self.position += 1
            self.tool_positions[event.call_id] = (self.position, time.perf_counter())
            await services.amessage_save(
                turn_id=self.turn_id,
                position=self.position,
                new=True,
                fields={
                    "kind": MessageKind.TOOL,
                    "content": event.tool_name,
                    "call_id": event.call_id,
                    "tool_name": event.tool_name,
                    "arguments": event.arguments,
                },
            )
        elif isinstance(event, ToolResult):
            for entry in self.shown:
                if isinstance(entry, _ShownTool) and entry.call.call_id == event.call_id:
                    entry.result = event
            position, started = self.tool_positions[event.call_id]
            await services.amessage_save(
                turn_id=self.turn_id,
                position=position,
                fields={
                    "tool_result": event.result,
                    "ok": event.ok,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )

    def _segment(self) -> services.TextSegment | None:
        if self.text_position is None:
            return None
        return services.TextSegment(self.text_position, "".join(self.text), new=not self.text_saved)

    def heartbeat_segment(self) -> services.TextSegment | None:
        """The open text segment so far, for a heartbeat to save; later saves of it update."""
        segment = self._segment()
        self.text_saved = self.text_saved or segment is not None
        return segment

    async def flush_text(self) -> None:
        segment = self.take_segment()
        if segment is not None:
            await services.atext_segment_save(turn_id=self.turn_id, segment=segment)

    def take_segment(self) -> services.TextSegment | None:
        """End the open text segment and return it for the caller to save."""
        segment = self._segment()
        self.text = []
        self.text_position = None
        self.text_saved = False
        return segment

    def replay_items(self) -> list[dict[str, Any]]:
        """The turn as the model should remember it when it did not finish: what the user saw,
        every tool call with its output (a synthetic one where it had none)."""
        items: list[dict[str, Any]] = []
        for entry in self.shown:
            if isinstance(entry, list):
                # The SDK's own shape for model output, so a following tool call merges into
                # the same assistant message on replay, as after a completed step.
                items.append(
                    {
                        "type": "message",
                        "role": "assistant",
                        "id": f"msg_{uuid.uuid4().hex}",
                        "status": "completed",
                        "content": [{"type": "output_text", "text": "".join(entry), "annotations": []}],
                    }
                )
                continue
            call = entry.call
            output = entry.result.result if entry.result is not None else CANCELLED_TOOL_OUTPUT
            items.append(
                {
                    "type": "function_call",
                    "call_id": call.call_id,
                    "name": call.tool_name,
                    "arguments": json.dumps(call.arguments),
                }
            )
            items.append({"type": "function_call_output", "call_id": call.call_id, "output": output})
        return items
