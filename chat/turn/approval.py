"""Tool approval (human in the loop), on the Agents SDK's own mechanism.

- The tools that need it (tools/approval.py) get the SDK's `needs_approval`, except those the
  user approved for the rest of the conversation (`remember: "conversation"`).
- A streamed run that ends with `interruptions` pauses: the step's calls are announced, the
  paused run (`RunState.to_json()`), the frames sent so far and one request per waiting call
  are written with the journal's flush (the turn becomes `waiting`), and only then are the
  `tool_approval_request` frames sent, so an answer never arrives before its request is stored.
  The turn's task then ends: nothing runs, no provider call is open, and no lease is held.
- The answer that leaves none of its turn's requests pending takes the turn back
  (chat/store/approvals.py), and that process resumes it: `RunState.from_json`, then
  `approve` / `reject` for each answer, then `Runner.run_streamed` on the state, the same turn
  (`message_id`) with `seq` going on from the stored frames.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from agents import Agent, FunctionTool, RunState
from agents.items import ToolApprovalItem
from agents.result import RunResultStreaming

from chat.models import TurnStatus, UsageRecord
from chat.protocol import ToolApprovalRequest, ToolCall, TurnEvent
from chat.store import services
from chat.store.approvals import Decision, PauseWrite, atools_remembered
from chat.turn.journal import Journal
from chat.turn.mapping import EventMapper
from tools.approval import approval_configured, builtin_requires_approval, mcp_requires_approval
from tools.mcp.toolset import McpTool
from tools.registry import registry

PAUSED = services.TurnEnd(TurnStatus.WAITING, "")


class Outlet(Protocol):
    """Where a turn's frames go (chat/turn/running.py): a pause encodes its requests before it
    writes them (their frames are stored with it), and sends them once written."""

    def sent(self) -> list[str]: ...

    def encode(self, event: TurnEvent) -> tuple[int, str]: ...  # its seq and frame

    def send(self, seq: int, frame: str) -> None: ...

    def rewind(self, count: int) -> None: ...


@dataclass(frozen=True, kw_only=True)
class ResumePoint:
    """A paused turn to resume: its stored run and the user's answers."""

    state: dict[str, Any]
    frames: list[str]
    first_turn: bool
    decisions: dict[str, Decision]  # by call id
    usage: list[UsageRecord]  # its requests' ledger rows before the pause


async def tools_gate(agent: Agent[Any], mcp_tools: list[McpTool], *, conversation_id: str) -> None:
    """Give the agent's tools that need the user's approval the SDK's `needs_approval`."""
    if not approval_configured():
        return
    gated = {tool.name for tool in registry.enabled() if builtin_requires_approval(tool)}
    gated |= {tool.name for tool in mcp_tools if mcp_requires_approval(tool)}
    if gated:
        gated -= await atools_remembered(conversation_id=conversation_id)
    for tool in agent.tools:
        if isinstance(tool, FunctionTool) and tool.name in gated:
            tool.needs_approval = True


def _call_id(item: ToolApprovalItem) -> str:
    raw = item.raw_item
    call_id = raw.get("call_id") if isinstance(raw, dict) else getattr(raw, "call_id", None)
    return str(call_id or "")


def requests_build(result: RunResultStreaming, mapper: EventMapper) -> list[ToolApprovalRequest]:
    """One request per call the paused run waits for, with the arguments its `tool_call` showed."""
    shown = {pending.call.call_id: pending.call for pending in mapper.pending}
    requests = []
    for item in result.interruptions:
        call_id = _call_id(item)
        call = shown.get(call_id)
        requests.append(
            ToolApprovalRequest(
                approval_id=str(uuid.uuid4()),
                call_id=call_id,
                tool_name=item.tool_name or (call.tool_name if call else ""),
                arguments=call.arguments if call else {},
            )
        )
    return requests


async def pause_write(
    *,
    result: RunResultStreaming,
    journal: Journal,
    outlet: Outlet,
    requests: list[ToolApprovalRequest],
    first_turn: bool,
) -> list[tuple[int, str]] | None:
    """Store the paused run and its requests; their frames, to send now, or None if the lease
    was lost (another process ended the turn)."""
    frames = [outlet.encode(request) for request in requests]
    try:
        pause = PauseWrite(
            state=result.to_state().to_json(),
            frames=outlet.sent() + [frame for _, frame in frames],
            first_turn=first_turn,
            requests=requests,
        )
        held = await journal.flush(PAUSED, pause=pause)
    except BaseException:
        outlet.rewind(len(frames))  # never sent: the turn's closing events take their seq
        raise
    if not held:
        outlet.rewind(len(frames))
        return None
    return frames


async def run_state(agent: Agent[Any], point: ResumePoint) -> RunState[Any, Agent[Any]]:
    """The paused run, with the user's answers given to the SDK."""
    state = await RunState.from_json(agent, point.state)
    for item in state.get_interruptions():
        decision = point.decisions.get(_call_id(item))
        if decision is None:
            continue  # still pending (it would pause again)
        if decision.approved:
            state.approve(item, always_approve=decision.remember == "conversation")
        else:
            state.reject(item, rejection_message=declined_message(decision.reason))
    return state


def declined_message(reason: str) -> str:
    """What the model reads as the declined call's result (and the client as its `tool_result`)."""
    message = "Error: the user declined this tool call, so it did not run."
    return f"{message} Their reason: {reason}" if reason else message


def resume_prepare(mapper: EventMapper, journal: Journal, point: ResumePoint) -> None:
    """A resumed turn's mapper: the calls that waited get their results, failures if declined."""
    waiting = [entry.call for entry in journal.entries if entry.call is not None and entry.result is None]
    declined = frozenset(call_id for call_id, decision in point.decisions.items() if not decision.approved)
    mapper.resume([call for call in waiting if isinstance(call, ToolCall)], declined)
