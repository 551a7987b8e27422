"""Agents SDK stream events → the contract's turn events.

The SDK announces every tool call of a step before running them (concurrently), then their
outputs; the frontend fills only the last tool entry, so calls go out pair by pair: a call is
sent when the one before it has its result.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from agents import RunItemStreamEvent, StreamEvent

from chat.protocol import FinalResponseStart, FinalStream, Stream, ToolCall, ToolResult, TurnEvent
from tools.base import ToolResult as ToolOutcome

TEXT_DELTA = "response.output_text.delta"
RESPONSE_COMPLETED = "response.completed"


@dataclass
class _PendingCall:
    call: ToolCall
    result: ToolResult | None = None
    sent: bool = False


@dataclass
class RequestTiming:
    """When a model request started and when its first output arrived (latency and TTFT in
    the ledger; the end is when its `response.completed` is seen)."""

    started: float
    first_output: float | None = None


@dataclass
class EventMapper:
    # The tools the agent was offered: a result for any other name is the SDK's "no such tool".
    offered: frozenset[str] = frozenset()
    seen_tool: bool = False
    text_after_tools_started: bool = False
    pending: deque[_PendingCall] = field(default_factory=deque)
    # Model requests completed in this turn: (usage object, timing).
    completed: list[tuple[Any, RequestTiming]] = field(default_factory=list)
    timing: RequestTiming = field(default_factory=lambda: RequestTiming(started=time.perf_counter()))
    # Calls the user declined (a resumed turn): their results are failures.
    declined: frozenset[str] = frozenset()

    def feed(self, event: StreamEvent) -> list[TurnEvent]:
        if event.type == "raw_response_event":
            return self._raw(event.data)
        if isinstance(event, RunItemStreamEvent):
            if event.name == "tool_called":
                return self._tool_called(event.item.raw_item)
            if event.name == "tool_output":
                return self._tool_output(event.item.raw_item, event.item.output)
        return []

    def _raw(self, data: Any) -> list[TurnEvent]:
        kind = data.type
        if kind == TEXT_DELTA:
            self.timing.first_output = self.timing.first_output or time.perf_counter()
            if not data.delta:
                return []
            if not self.seen_tool:
                return [Stream(content=data.delta)]
            if not self.text_after_tools_started:
                self.text_after_tools_started = True
                return [FinalResponseStart(), FinalStream(content=data.delta)]
            return [FinalStream(content=data.delta)]
        if kind == RESPONSE_COMPLETED:
            self.completed.append((data.response.usage, self.timing))
            self.timing = RequestTiming(started=time.perf_counter())
        elif kind == "response.output_item.added":
            self.timing.first_output = self.timing.first_output or time.perf_counter()
        return []

    def _tool_called(self, raw: Any) -> list[TurnEvent]:
        self.seen_tool = True
        self.text_after_tools_started = False
        try:
            arguments = json.loads(raw.arguments or "{}")
        except json.JSONDecodeError:
            arguments = {"_raw": raw.arguments}
        if not isinstance(arguments, dict):
            arguments = {"_raw": arguments}
        self.pending.append(_PendingCall(ToolCall(tool_name=raw.name, arguments=arguments, call_id=raw.call_id)))
        return self._flush()

    def _tool_output(self, raw: Any, output: Any) -> list[TurnEvent]:
        call_id = raw.get("call_id") if isinstance(raw, dict) else getattr(raw, "call_id", None)
        for pending in self.pending:
            if pending.call.call_id == call_id:
                name = pending.call.tool_name
                ok = output.ok if isinstance(output, ToolOutcome) else name in self.offered
                ok = ok and call_id not in self.declined
                pending.result = ToolResult(tool_name=name, result=str(output), call_id=pending.call.call_id, ok=ok)
                break
        # Text after these results starts a new segment.
        self.text_after_tools_started = False
        return self._flush()

    def _flush(self) -> list[TurnEvent]:
        out: list[TurnEvent] = []
        while self.pending:
            head = self.pending[0]
            if not head.sent:
                out.append(head.call)
                head.sent = True
            if head.result is None:
                break
            out.append(head.result)
            self.pending.popleft()
        return out

    def pause(self) -> list[TurnEvent]:
        """The run pauses for the user's approval: every call of its step is announced now,
        each with its result if it ran; the calls that wait stay pending, for `resume`."""
        out: list[TurnEvent] = []
        for pending in list(self.pending):
            if not pending.sent:
                out.append(pending.call)
                pending.sent = True
            if pending.result is not None:
                out.append(pending.result)
                self.pending.remove(pending)
        return out

    def resume(self, waiting: list[ToolCall], declined: frozenset[str]) -> None:
        """A paused turn goes on: `waiting` were announced and get their results now."""
        self.seen_tool = True
        self.pending.extend(_PendingCall(call, sent=True) for call in waiting)
        self.declined = declined

    def unfinished_calls(self) -> list[ToolCall]:
        """Calls announced to the client that have no result (a cancel or error cut them)."""
        return [pending.call for pending in self.pending if pending.sent]
