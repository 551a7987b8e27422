"""Cancel, disconnect, provider failures and bad frames: every one ends cleanly and the
connection stays usable."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from chat.models import Turn
from chat.turn.mapping import EventMapper
from dreamytin.asgi import application
from tests.chat.frontend import render, without_empty
from tests.conftest import connect
from tests.fake_provider import Reply, error, text, tools
from tools.base import BaseTool, ToolArgs, ToolResult
from tools.registry import registry

pytestmark = pytest.mark.django_db(transaction=True)


def types(events):
    return [event["type"] for event in events]


async def assert_usable(ws):
    await ws.send({"type": "ping"})
    assert (await ws.receive())["type"] == "pong"


# -- cancel and disconnect -----------------------------------------------------------------


async def test_cancel_during_text_keeps_streamed_text_and_closes_provider_stream(ws, provider):
    provider.script(text(*[f"w{i} " for i in range(200)], interval=0.02))
    await ws.send({"message": "write a lot"})
    first = await ws.receive()
    assert first["type"] == "stream"
    await asyncio.sleep(0.1)
    cancelled_at = time.time()
    await ws.send({"type": "cancel"})
    events = [first, *await ws.until_end()]
    assert "error" not in types(events)
    assert events[-1]["finish_reason"] == "cancelled"
    await asyncio.sleep(0.3)
    closed = provider.requests[0].closed_early_at
    assert closed is not None and closed - cancelled_at < 1.0
    streamed = "".join(e["content"] for e in events if e["type"] == "stream")
    turn = await Turn.objects.aget(id=events[0]["message_id"])
    assert turn.status == "cancelled"
    await assert_usable(ws)
    # The next turn works and replays the streamed text as the assistant's.
    provider.script(text("ok"))
    await ws.turn("continue")
    replay = provider.requests[-1].body["messages"]
    assert [m["role"] for m in replay] == ["system", "user", "assistant", "user"]
    assert replay[2]["content"] == streamed


class SlowArgs(ToolArgs):
    seconds: float = 5


class SlowTool(BaseTool[SlowArgs]):
    name = "slow"
    description = "Sleeps."
    args_model = SlowArgs

    async def execute(self, args: SlowArgs) -> ToolResult:
        await asyncio.sleep(args.seconds)
        return ToolResult.success("slept")


@pytest.fixture
def slow_tool():
    registry.register(SlowTool)
    yield
    registry.unregister("slow")


async def test_cancel_during_a_running_tool_records_a_synthetic_output(ws, provider, slow_tool):
    provider.script(tools(("slow", {"seconds": 5})))
    await ws.send({"message": "be slow"})
    call = await ws.receive()
    assert call["type"] == "tool_call"
    await ws.send({"type": "cancel"})
    events = await ws.until_end(timeout=3)
    assert types(events) == ["stream_end"] and events[0]["finish_reason"] == "cancelled"
    # The next request is valid: the call has an output.
    provider.script(text("ok"))
    await ws.turn("again")
    replay = provider.requests[-1].body["messages"]
    assert replay[2]["role"] == "assistant" and replay[2]["tool_calls"][0]["id"] == call["call_id"]
    assert replay[3] == {"role": "tool", "tool_call_id": call["call_id"], "content": replay[3]["content"]}
    assert "cancelled" in replay[3]["content"]


@override_settings(TURN_DETACH_GRACE=0)
async def test_disconnect_during_text_closes_the_provider_stream_within_a_second(provider):
    ws = await connect("leaver")
    provider.script(text(*[f"w{i} " for i in range(500)], interval=0.02))
    await ws.send({"message": "long answer"})
    first = await ws.receive()
    left_at = time.time()
    await ws.communicator.disconnect()
    await asyncio.sleep(1.0)
    closed = provider.requests[0].closed_early_at
    assert closed is not None and closed - left_at < 1.0
    turn = await Turn.objects.aget(id=first["message_id"])
    assert turn.status == "cancelled"


async def test_cancel_with_no_turn_running_is_harmless(ws):
    await ws.send({"type": "cancel"})
    await assert_usable(ws)


# -- provider failures ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "code", "retryable"),
    [
        (error(401, "invalid api key"), "provider_auth", False),
        (error(429, "slow down", headers={"Retry-After": "7"}), "provider_rate_limited", True),
        (error(500), "provider_unavailable", True),
        (error(503, "overloaded"), "provider_unavailable", True),
        (text("a", "b", "c", cut_after=2), "provider_unavailable", True),
        (
            error(400, "This model's maximum context length is 128000 tokens. However, you requested 200000 tokens"),
            "context_length_exceeded",
            False,
        ),
    ],
)
@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet-4-5"])  # native OpenAI route, LiteLLM route
async def test_provider_failure_ends_with_error_then_stream_end(ws, provider, reply, code, retryable, model):
    provider.script(reply)
    events = await ws.turn("hi", model=model)
    error_event = next(e for e in events if e["type"] == "error")
    assert error_event["code"] == code and error_event["retryable"] is retryable
    assert events[-1]["type"] == "stream_end" and events[-1]["finish_reason"] == "error"
    assert types(events)[-2] == "error"
    assert "Traceback" not in error_event["error"] and "sk-test" not in error_event["error"]
    if code == "provider_rate_limited":
        assert error_event["retry_after"] == 7 and "7 seconds" in error_event["error"]
    await assert_usable(ws)


async def test_a_malformed_stream_is_provider_unavailable(ws, provider):
    # Native OpenAI route. (LiteLLM's Anthropic route skips a non-JSON line by itself.)
    provider.script(Reply(text=["partial"], malformed=True))
    events = await ws.turn("hi")
    assert next(e for e in events if e["type"] == "error")["code"] == "provider_unavailable"
    assert events[-1]["finish_reason"] == "error"


async def test_an_internal_error_is_logged_once_with_its_cause(ws, provider, caplog, monkeypatch):
    def broken(self, raw):
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(EventMapper, "_tool_called", broken)
    provider.script(tools(("ls", {})))
    with caplog.at_level(logging.ERROR, logger="chat.turn.runner"):
        events = await ws.turn("hi")
    assert next(e for e in events if e["type"] == "error")["code"] == "internal_error"
    logged = [r for r in caplog.records if getattr(r, "event", None) == "turn_internal_error"]
    assert len(logged) == 1 and logged[0].exc_info is not None
    # The failed turn's run stopped: no tool ran on and asked the model again (it would within
    # milliseconds).
    for _ in range(100):
        await asyncio.sleep(0.02)
        assert len(provider.requests) == 1


async def test_an_agent_that_cannot_be_built_still_ends_the_turn(ws, provider, tmp_path):
    with override_settings(SYSTEM_PROMPT_FILE=tmp_path / "missing.md"):
        events = await ws.turn("hi")
    assert types(events) == ["error", "stream_end"] and events[0]["code"] == "internal_error"
    assert len(provider.requests) == 0
    await assert_usable(ws)


async def test_failed_turn_shows_error_in_place_of_the_reply(ws, provider):
    provider.script(error(500))
    events = await ws.turn("hi")
    shown = without_empty(render(events, "hi"))
    assert shown[-1]["content"].startswith("Error: The provider failed")


async def test_provider_timeout(ws, provider):
    provider.script(text("late", ttft=3))
    with override_settings(PROVIDER_TIMEOUT=0.5):
        events = await ws.turn("hi")
    assert next(e for e in events if e["type"] == "error")["code"] == "provider_timeout"


async def test_turn_limit(ws, provider):
    provider.script(*[tools(("ls", {})) for _ in range(3)])
    with override_settings(AGENT_MAX_TURNS=2):
        events = await ws.turn("loop")
    assert next(e for e in events if e["type"] == "error")["code"] == "max_turns_exceeded"
    assert events[-1]["finish_reason"] == "max_turns"


async def test_retry_before_first_token_is_invisible_and_saves_the_message_once(ws, provider):
    provider.script(error(500), text("recovered"))
    with override_settings(PROVIDER_RETRIES=2):
        events = await ws.turn("hi")
    assert types(events) == ["stream", "stream_end"]
    assert len(provider.requests) == 2
    assert [m["role"] for m in provider.requests[1].body["messages"]] == ["system", "user"]


async def test_no_retry_after_text_reached_the_client(ws, provider):
    provider.script(text("partial", "more", cut_after=2), text("should not be requested"))
    with override_settings(PROVIDER_RETRIES=2):
        events = await ws.turn("hi")
    assert "error" in types(events)
    assert len(provider.requests) == 1


# -- bad frames ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_message"),
        ('"hello"', "invalid_message"),
        ('{"type": "dance"}', "invalid_message"),
        ('{"message": 42}', "invalid_message"),
        ('{"message": "hi", "model": 7}', "invalid_message"),
        ('{"type": "chat"}', "invalid_message"),
        ('{"type": "hello"}', "invalid_message"),
        ('{"type": "hello", "protocol": 0}', "invalid_message"),
        ('{"type": "hello", "protocol": "2"}', "invalid_message"),
        ('{"message": ""}', "empty_message"),
        ('{"message": "  \\n\\t "}', "empty_message"),
        ('{"message": "hi", "model": "gpt-99"}', "unknown_model"),
    ],
)
async def test_bad_frame_gets_a_lone_error_and_the_connection_stays_open(ws, provider, frame, code):
    await ws.communicator.send_to(text_data=frame)
    event = await ws.receive()
    assert event["type"] == "error" and event["code"] == code
    assert event["error"]
    assert await ws.communicator.receive_nothing(timeout=0.1)
    assert provider.requests == []
    await assert_usable(ws)


async def test_binary_frame(ws):
    await ws.communicator.send_to(bytes_data=b"\x00\x01")
    assert (await ws.receive())["code"] == "invalid_message"
    await assert_usable(ws)


async def test_message_over_the_limit(ws, provider):
    with override_settings(CHAT_MAX_MESSAGE_CHARS=10):
        await ws.send({"message": "x" * 11})
        event = await ws.receive()
    assert event["code"] == "message_too_large" and "10" in event["error"]
    await assert_usable(ws)


async def test_frame_over_one_mebibyte_is_refused_with_close_1009(ws):
    await ws.communicator.send_to(text_data='{"message": "' + "x" * (1024 * 1024 + 10) + '"}')
    event = await ws.receive()
    assert event["code"] == "message_too_large"
    closed = await ws.communicator.receive_output(timeout=2)
    assert closed == {"type": "websocket.close", "code": 1009}


async def test_the_frame_limit_counts_bytes_not_characters(ws):
    # 400,000 three-byte characters: under 1 MiB of characters, over 1 MiB of UTF-8.
    await ws.communicator.send_to(text_data='{"message": "' + "€" * 400_000 + '"}')
    assert (await ws.receive())["code"] == "message_too_large"
    assert await ws.communicator.receive_output(timeout=2) == {"type": "websocket.close", "code": 1009}


async def test_model_without_key_is_unavailable(ws, provider):
    with override_settings(ANTHROPIC_API_KEY=None):
        await ws.send({"message": "hi", "model": "claude-sonnet-4-5"})
        event = await ws.receive()
    assert event["code"] == "model_unavailable"
    await assert_usable(ws)


async def test_second_chat_while_a_turn_runs_is_busy(ws, provider):
    provider.script(text(*["x"] * 50, interval=0.02))
    await ws.send({"message": "first"})
    assert (await ws.receive())["type"] == "stream"
    await ws.send({"message": "second"})
    while (event := await ws.receive())["type"] == "stream":
        pass
    assert event["type"] == "error" and event["code"] == "busy" and event["retryable"] is True
    events = await ws.until_end()
    assert events[-1]["finish_reason"] == "stop"
    assert len(provider.requests) == 1


async def test_second_connection_to_a_busy_conversation_is_busy(ws, provider):
    provider.script(text(*["x"] * 50, interval=0.02))
    await ws.send({"message": "first"})
    assert (await ws.receive())["type"] == "stream"
    other = await connect("conv1")
    await other.send({"message": "from another tab"})
    assert (await other.receive())["code"] == "busy"
    await other.communicator.disconnect()
    await ws.until_end()


# -- handshake --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", ["has space", "a" * 65, "bang!id", "dots.dots", ""])
async def test_malformed_conversation_id_is_refused_at_the_handshake(bad_id):
    communicator = WebsocketCommunicator(application, f"/ws/{bad_id}")
    connected, _ = await communicator.connect(timeout=5)
    assert not connected


@pytest.mark.parametrize(
    ("origin", "admitted"),
    [
        (None, True),
        (b"http://localhost:1420", True),
        (b"http://127.0.0.1:1420", True),
        (b"tauri://localhost", True),
        (b"http://localhost:8000", True),  # this server's own page: the Host, in ALLOWED_HOSTS
        (b"http://localhost:5173", False),  # another local server's page
        (b"http://127.0.0.1:8000", False),  # another origin than the Host it was served from
        (b"https://evil.example", False),
        (b"http://localhost.evil.example", False),
        (b"null", False),
    ],
)
async def test_origin_check(origin, admitted):
    headers = [(b"host", b"localhost:8000"), *([(b"origin", origin)] if origin else [])]
    communicator = WebsocketCommunicator(application, "/ws/origin1", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected is admitted
    if connected:
        await communicator.disconnect()


# -- the database failing -------------------------------------------------------------------


async def test_a_database_failure_at_the_end_still_ends_the_turn(ws, provider, monkeypatch):
    from django.db import OperationalError

    from chat.store import services

    async def broken(**kwargs):
        raise OperationalError("disk I/O error")

    monkeypatch.setattr(services, "aturn_flush", broken)
    provider.script(text("hello"))
    events = await ws.turn("hi")
    assert events[-1]["type"] == "stream_end" and events[-1]["finish_reason"] == "stop"
    await assert_usable(ws)


async def test_a_database_failure_at_the_start_is_an_internal_error(ws, provider, monkeypatch):
    from django.db import OperationalError

    from chat.store import services

    async def broken(**kwargs):
        raise OperationalError("database is locked /var/lib/secret")

    monkeypatch.setattr(services, "aturn_start", broken)
    await ws.send({"message": "hi"})
    event = await ws.receive()
    assert event["type"] == "error" and event["code"] == "internal_error"
    assert "/var/lib" not in event["error"]
    assert provider.requests == []
    await assert_usable(ws)
