"""The existing frontend's rendering rules (../shared/PROTOCOL.md), as a reducer: applying a
turn's events must leave exactly the messages the user is meant to see."""

from __future__ import annotations

from typing import Any


def render(
    events: list[dict[str, Any]], message: str, messages: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    shown = list(messages or [])
    shown.append({"role": "user", "content": message})
    shown.append({"role": "assistant", "content": ""})
    return reload_render(events, shown)


def reload_render(events: list[dict[str, Any]], messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """After a reload: the restored messages (`GET /conversations/<id>`), then the events the
    new socket receives, applied to them as they are."""
    shown = [dict(message) for message in messages]
    for event in events:
        kind = event["type"]
        if kind in ("stream", "final_stream"):
            if shown[-1]["role"] == "assistant":
                shown[-1] = {**shown[-1], "content": shown[-1]["content"] + event["content"]}
        elif kind == "tool_call":
            shown.append(
                {
                    "role": "tool",
                    "content": f"🔧 {event['tool_name']}",
                    "toolName": event["tool_name"],
                    "toolResult": None,
                }
            )
        elif kind == "tool_result":
            tools = [m for m in shown if m["role"] == "tool"]
            if tools and tools[-1]["toolName"] == event["tool_name"]:
                tools[-1]["toolResult"] = event["result"]
        elif kind == "final_response_start":
            shown.append({"role": "assistant", "content": ""})
        elif kind == "error":
            # Written over the last message when it is the assistant's; nothing shows after a tool.
            if shown[-1]["role"] == "assistant":
                shown[-1] = {**shown[-1], "content": f"Error: {event['error']}"}
    return shown


def as_shown(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the existing frontend reads of `GET /conversations/<id>`'s entries: it ignores
    their node ids and branch marks (issue 30)."""
    return [{k: v for k, v in m.items() if k not in ("id", "message_id", "branch")} for m in messages]


def without_empty(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if not (m["role"] == "assistant" and not m["content"])]
