"""What the user sees, live and after a reload: a failed turn keeps what was streamed and shows
its error in an entry of its own; a tool the model was not offered does not end the turn."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from tests.chat.frontend import as_shown, render, without_empty
from tests.fake_provider import error, text, tools

pytestmark = pytest.mark.django_db(transaction=True)


def types(events):
    return [event["type"] for event in events]


@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet-4-5"])
async def test_a_tool_nobody_offered_is_answered_to_the_model_and_the_turn_goes_on(ws, provider, model):
    provider.script(tools(("no_such_tool", {"x": 1})), text("Sorry, I will use ls."))
    events = await ws.turn("hi", model=model)
    assert types(events) == ["tool_call", "tool_result", "final_response_start", "final_stream", "stream_end"]
    result = events[1]
    assert result["tool_name"] == "no_such_tool" and result["ok"] is False
    assert "no tool named 'no_such_tool'" in result["result"] and "read_file" in result["result"]
    assert events[-1]["finish_reason"] == "stop"
    told = [m for m in provider.requests[1].body.get("messages", []) if m.get("role") == "tool"]
    if model == "gpt-4o":  # the OpenAI format; Anthropic's carries it as a tool_result block
        assert "no tool named" in told[0]["content"]
    else:
        assert "no tool named" in json.dumps(provider.requests[1].body)


@pytest.mark.parametrize(
    ("replies", "code"),
    [
        ((error(500),), "provider_unavailable"),
        ((text("Half an ans", "wer and", "more", cut_after=3),), "provider_unavailable"),
        ((tools(("ls", {}), text=["Looking."]), error(500)), "provider_unavailable"),
        ((tools(("ls", {})), tools(("ls", {})), tools(("ls", {}))), "max_turns_exceeded"),
    ],
    ids=["error-before-output", "cut-after-text", "error-after-a-tool", "max-turns-after-tools"],
)
@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet-4-5"])
async def test_an_error_shows_the_same_live_and_after_a_reload(ws, provider, async_client, replies, code, model):
    provider.script(*replies)
    with override_settings(AGENT_MAX_TURNS=2):
        events = await ws.turn("hi", model=model)
    assert next(e for e in events if e["type"] == "error")["code"] == code
    live = without_empty(render(events, "hi"))
    restored = (await async_client.get("/conversations/conv1")).json()["messages"]
    assert as_shown(restored) == live
    assert live[-1]["content"].startswith("Error: ")
    # What was streamed before the error stays on screen.
    if len(replies) == 1 and replies[0].text:
        streamed = "".join(e["content"] for e in events if e["type"] == "stream")
        assert streamed.startswith("Half an ans") and live[1] == {"role": "assistant", "content": streamed}
