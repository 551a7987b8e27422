"""The WebSocket turn: every event sequence, the frontend's rendering, seq/ids, usage."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from channels.layers import channel_layers, get_channel_layer
from django.test import override_settings

from tests.chat.frontend import render, without_empty
from tests.conftest import connect
from tests.fake_provider import text, tools

pytestmark = pytest.mark.django_db(transaction=True)


def types(events):
    return [event["type"] for event in events]


async def test_text_only_turn_streams_deltas_then_ends(ws, provider):
    provider.script(text("Hel", "lo", "", " there"))
    events = await ws.turn("hi")
    assert types(events) == ["stream", "stream", "stream", "stream_end"]  # the empty delta is dropped
    assert "".join(e["content"] for e in events[:-1]) == "Hello there"
    end = events[-1]
    assert end["finish_reason"] == "stop"
    assert end["usage"]["requests"] == 1
    assert end["usage"]["input_tokens"] == 12 and end["usage"]["output_tokens"] == 7
    assert end["usage"]["total_tokens"] == 19
    # gpt-4o: $2.50 / $10 per million tokens in LiteLLM's bundled map.
    assert end["usage"]["cost_usd"] == pytest.approx(12 * 2.5e-6 + 7 * 10e-6)


async def test_every_event_carries_turn_fields_and_gapless_seq(ws, provider):
    provider.script(tools(("ls", {})), text("done"))
    events = await ws.turn("hi")
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert len({e["message_id"] for e in events}) == 1
    for event in events:
        assert event["conversation_id"] == "conv1"
        assert event["model"] == "gpt-4o"
        # ISO 8601 in UTC (the contract).
        assert datetime.fromisoformat(event["timestamp"]).utcoffset() == timedelta(0)


async def test_tool_then_text(ws, provider, workspace):
    (workspace / "notes.md").write_text("# notes")
    provider.script(tools(("ls", {"path": "."}), text=["Let me look."]), text("You have ", "notes.md."))
    events = await ws.turn("what files do I have?")
    assert types(events) == [
        "stream",
        "tool_call",
        "tool_result",
        "final_response_start",
        "final_stream",
        "final_stream",
        "stream_end",
    ]
    call, result = events[1], events[2]
    assert call["tool_name"] == "ls" and call["arguments"] == {"path": "."}
    assert result["call_id"] == call["call_id"] and result["ok"] is True
    assert "notes.md" in result["result"]
    assert without_empty(render(events, "what files do I have?")) == [
        {"role": "user", "content": "what files do I have?"},
        {"role": "assistant", "content": "Let me look."},
        {"role": "tool", "content": "🔧 ls", "toolName": "ls", "toolResult": result["result"]},
        {"role": "assistant", "content": "You have notes.md."},
    ]


async def test_two_tools_in_one_step_go_out_pair_by_pair(ws, provider, workspace):
    (workspace / "a.txt").write_text("alpha")
    (workspace / "b.txt").write_text("beta")
    provider.script(tools(("read_file", {"path": "a.txt"}), ("read_file", {"path": "b.txt"})), text("Both read."))
    events = await ws.turn("read both")
    assert types(events)[:4] == ["tool_call", "tool_result", "tool_call", "tool_result"]
    assert events[1]["call_id"] == events[0]["call_id"] and events[1]["result"] == "alpha"
    assert events[3]["call_id"] == events[2]["call_id"] and events[3]["result"] == "beta"
    assert events[0]["call_id"] != events[2]["call_id"]
    shown = without_empty(render(events, "read both"))
    assert [m.get("toolResult") for m in shown if m["role"] == "tool"] == ["alpha", "beta"]


async def test_tools_over_three_steps(ws, provider, workspace):
    (workspace / "a.txt").write_text("alpha")
    provider.script(
        tools(("ls", {})),
        tools(("read_file", {"path": "a.txt"})),
        tools(("read_file", {"path": "missing.txt"})),
        text("Finished."),
    )
    events = await ws.turn("explore")
    assert types(events) == [
        "tool_call",
        "tool_result",
        "tool_call",
        "tool_result",
        "tool_call",
        "tool_result",
        "final_response_start",
        "final_stream",
        "stream_end",
    ]
    assert events[5]["ok"] is False and "Not found" in events[5]["result"]
    assert events[-1]["usage"]["requests"] == 4
    assert len(provider.requests) == 4


async def test_text_between_tool_steps_gets_its_own_segment(ws, provider):
    provider.script(tools(("ls", {})), tools(("ls", {}), text=["Checking again."]), text("Done."))
    events = await ws.turn("go")
    assert types(events) == [
        "tool_call",
        "tool_result",
        "final_response_start",
        "final_stream",
        "tool_call",
        "tool_result",
        "final_response_start",
        "final_stream",
        "stream_end",
    ]
    shown = without_empty(render(events, "go"))
    assert [m["role"] for m in shown] == ["user", "tool", "assistant", "tool", "assistant"]


async def test_conversation_context_reaches_the_model(ws, provider):
    provider.script(text("Nice to meet you, Ada."), text("Your name is Ada."))
    await ws.turn("My name is Ada.")
    await ws.turn("What is my name?")
    second = provider.requests[1].body["messages"]
    roles = [m["role"] for m in second]
    assert roles == ["system", "user", "assistant", "user"]
    assert second[1]["content"] == "My name is Ada."
    assert second[2]["content"] == "Nice to meet you, Ada."


async def test_model_is_chosen_per_message(ws, provider):
    provider.script(text("mini here"))
    events = await ws.turn("hi", model="gpt-4o-mini")
    assert {e["model"] for e in events} == {"gpt-4o-mini"}
    assert provider.requests[0].body["model"] == "gpt-4o-mini"


async def test_ping_is_answered(ws):
    await ws.send({"type": "ping"})
    assert (await ws.receive())["type"] == "pong"


async def test_two_clients_never_see_each_others_events(provider):
    first, second = await connect("alice"), await connect("bob")
    provider.script(text("for alice"))
    events = await first.turn("hi")
    assert {e["conversation_id"] for e in events} == {"alice"}
    assert await second.communicator.receive_nothing(timeout=0.2)
    await first.communicator.disconnect()
    await second.communicator.disconnect()


async def test_a_connection_holds_nothing_in_the_channel_layer(provider):
    # Events go to the socket that started the turn; a subscription per connection would hold a
    # receive on the layer (on Redis, in every worker) for as long as the socket is open.
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}):
        channel_layers.backends.clear()
        try:
            client = await connect("layer")
            provider.script(text("hello"))
            await client.turn("hi")
            assert get_channel_layer().channels == {}
            await client.communicator.disconnect()
        finally:
            channel_layers.backends.clear()
