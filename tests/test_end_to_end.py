"""The real server as a user runs it, on each server the README names (runserver, daphne, and
uvicorn on uvloop), driven by a real WebSocket client doing what the frontend does. What the
user saw live must be what a reload restores."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.chat.frontend import as_shown, render, without_empty
from tests.chat.sse_client import sse_events
from tests.conftest import catalog_file
from tests.fake_provider import FakeProvider, error, text, tools
from tests.servers import SERVERS, Server, database_migrated

ORIGIN = {"Origin": "http://localhost:1420"}
MODELS = {
    "gpt-4o": {"provider": "openai", "name": "GPT-4o", "maxTokens": 128000},
    "claude-sonnet-4-5": {"provider": "anthropic", "name": "Claude Sonnet 4.5", "maxTokens": 200000},
}


def server_env(fake_server: FakeProvider, tmp_path: Path, name: str, *, anthropic: bool = False) -> dict[str, str]:
    """A server's environment on the fake provider. Claude is usable only with `anthropic`: it
    goes through LiteLLM, whose import costs every server that can use it seconds of CPU at
    start-up (chat.warmup), and only this module's tests send to it."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "todo.md").write_text("- write tests\n")
    env = {
        **os.environ,
        "DATABASE_URL": database_migrated(tmp_path, name),
        "OPENAI_API_KEY": "sk-e2e-test-key",
        "OPENAI_BASE_URL": f"{fake_server.url}/v1",
        "MODELS_FILE": str(catalog_file(tmp_path, MODELS, "gpt-4o")),
        "TOOLS_ALLOWED_DIRS": str(workspace),
        "PROVIDER_RETRIES": "0",
        "AGENT_MAX_TURNS": "2",
        # A reply stops as soon as its last socket leaves (tests/test_workers.py has the grace).
        "TURN_DETACH_GRACE": "0",
    }
    if anthropic:
        env |= {"ANTHROPIC_API_KEY": "sk-ant-e2e-test-key", "ANTHROPIC_BASE_URL": fake_server.url}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest, fake_server: FakeProvider, tmp_path_factory) -> Iterator[Server]:
    tmp_path = tmp_path_factory.mktemp(request.param)
    env = server_env(fake_server, tmp_path, f"e2e_{request.param}", anthropic=True)
    running = Server(request.param, env, tmp_path / "server.log")
    assert running.warmup == "done"
    yield running
    running.stop()


def open_socket(server: Server, conversation_id: str, *, protocol: int = 1) -> ClientConnection:
    """A socket on the conversation; with `protocol=2` it says `hello` and is sent every turn."""
    ws = connect(f"ws://127.0.0.1:{server.port}/ws/{conversation_id}", additional_headers=ORIGIN, open_timeout=5)
    assert json.loads(ws.recv(timeout=5))["type"] == "connected"
    if protocol >= 2:
        ws.send(json.dumps({"type": "hello", "protocol": protocol}))
        assert json.loads(ws.recv(timeout=5)) | {"timestamp": None} == {
            "type": "hello",
            "protocol": 2,
            "timestamp": None,
        }
    return ws


def until_end(ws: ClientConnection, events: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    events = events if events is not None else []
    while True:
        event = json.loads(ws.recv(timeout=20))
        events.append(event)
        if event["type"] == "stream_end":
            return events


def chat_turn(server: Server, conversation_id: str, message: str, model: str = "gpt-4o") -> list[dict[str, Any]]:
    with open_socket(server, conversation_id) as ws:
        ws.send(json.dumps({"message": message, "model": model}))
        return until_end(ws)


def restored(server: Server, conversation_id: str) -> list[dict[str, Any]]:
    return as_shown(httpx.get(f"{server.url}/conversations/{conversation_id}").json()["messages"])


def closed_early_within(fake: FakeProvider, since: float, seconds: float = 1.0) -> bool:
    deadline = time.monotonic() + 2 * seconds
    while time.monotonic() < deadline:
        closed = fake.requests[-1].closed_early_at
        if closed is not None:
            return closed - since < seconds
        time.sleep(0.02)
    return False


def test_first_load_with_the_frontends_built_in_model_gets_a_conversation(server, fake):
    created = httpx.post(
        f"{server.url}/conversations", json={"session_id": "firstload1", "model": "claude-3.5-haiku"}, headers=ORIGIN
    )
    assert created.status_code == 201 and created.json()["model"] == "gpt-4o"
    listed = httpx.get(f"{server.url}/conversations").json()["conversations"]
    assert {"id": "firstload1", "title": "New conversation"}.items() <= listed[0].items()


def test_a_tool_turn_shows_the_same_live_and_after_a_reload(server, fake):
    fake.script(tools(("read_file", {"path": "todo.md"}), text=["Checking."]), text("You need to ", "write tests."))
    events = chat_turn(server, f"tool{server.port}", "What is on my list?")
    assert [e["type"] for e in events] == [
        "stream", "tool_call", "tool_result", "final_response_start", "final_stream", "final_stream", "stream_end",
    ]  # fmt: skip
    assert events[2]["result"] == "- write tests\n"
    assert restored(server, f"tool{server.port}") == without_empty(render(events, "What is on my list?"))


@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet-4-5"])
def test_cancel_stops_the_provider_stream_and_keeps_the_text(server, fake, model):
    conversation = uuid.uuid4().hex
    fake.script(text(*[f"w{i} " for i in range(200)], interval=0.02))
    with open_socket(server, conversation) as ws:
        ws.send(json.dumps({"message": "write a lot", "model": model}))
        events = [json.loads(ws.recv(timeout=10))]
        time.sleep(0.2)
        cancelled_at = time.time()
        ws.send(json.dumps({"type": "cancel"}))
        until_end(ws, events)
    assert "error" not in [e["type"] for e in events]
    assert events[-1]["finish_reason"] == "cancelled"
    assert closed_early_within(fake, cancelled_at)
    assert restored(server, conversation) == without_empty(render(events, "write a lot"))


@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet-4-5"])
def test_a_client_that_vanishes_stops_the_provider_stream(server, fake, model):
    conversation = uuid.uuid4().hex
    fake.script(text(*[f"w{i} " for i in range(200)], interval=0.02))
    ws = open_socket(server, conversation)
    ws.send(json.dumps({"message": "write a lot", "model": model}))
    assert json.loads(ws.recv(timeout=10))["type"] == "stream"
    left_at = time.time()
    ws.close()
    assert closed_early_within(fake, left_at)
    # The turn was recorded as stopped, not failed: its text, and no error entry.
    time.sleep(0.3)
    shown = restored(server, conversation)
    assert shown[0]["content"] == "write a lot" and shown[1]["content"].startswith("w0 ")
    assert not any(m["content"].startswith("Error") for m in shown)


@pytest.mark.parametrize(
    ("replies", "code"),
    [
        ((text("Half an ans", "wer and", "more", cut_after=3),), "provider_unavailable"),
        ((tools(("ls", {}), text=["Looking."]), error(500)), "provider_unavailable"),
        ((tools(("ls", {})), tools(("ls", {})), tools(("ls", {}))), "max_turns_exceeded"),
        ((tools(("no_such_tool", {})), text("Sorry.")), None),
    ],
    ids=["cut-after-text", "error-after-a-tool", "max-turns", "unknown-tool"],
)
@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet-4-5"])
def test_failures_show_the_same_live_and_after_a_reload(server, fake, replies, code, model):
    conversation = uuid.uuid4().hex
    fake.script(*replies)
    events = chat_turn(server, conversation, "hi", model=model)
    errors = [e for e in events if e["type"] == "error"]
    assert [e["code"] for e in errors] == ([code] if code else [])
    assert "internal_error" not in json.dumps(events)
    live = without_empty(render(events, "hi"))
    assert restored(server, conversation) == live
    if code:
        assert live[-1]["content"].startswith("Error: ") and len(live) > 2  # what streamed stays


def test_a_tool_turn_survives_a_restart_onto_another_server(fake_server, tmp_path):
    fake_server.reset()
    env = server_env(fake_server, tmp_path, "e2e_restart")
    fake_server.script(tools(("read_file", {"path": "todo.md"}), text=["Checking."]), text("You need to write tests."))
    first = Server("daphne", env, tmp_path / "daphne.log")
    try:
        chat_turn(first, "e2e123abc", "What is on my list?")
    finally:
        first.stop()
    fake_server.script(text("Yes, tests."))
    second = Server("uvicorn", env, tmp_path / "uvicorn.log")
    try:
        events = chat_turn(second, "e2e123abc", "Anything else?")
        history = restored(second, "e2e123abc")
        listed = httpx.get(f"{second.url}/conversations").json()["conversations"]
    finally:
        second.stop()
    assert events[-1]["finish_reason"] == "stop"
    replay = fake_server.requests[-1].body["messages"]
    assert [m["role"] for m in replay] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert replay[2]["tool_calls"][0]["function"]["name"] == "read_file"
    assert replay[3]["content"] == "- write tests\n"
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant", "user", "assistant"]
    assert listed[0]["id"] == "e2e123abc" and listed[0]["message_count"] == 6
    fake_server.reset()


# Turns over HTTP: server-sent events on each server (chat/http_turns.py).


def test_a_turn_streamed_over_sse_is_what_a_socket_sees_and_a_reload_restores(server, fake):
    conversation_id = uuid.uuid4().hex[:9]
    fake.script(tools(("ls", {"path": "."})), text("Here ", "it is."))
    body = {"message": "list my files", "model": "gpt-4o", "stream": True}
    with httpx.stream("POST", f"{server.url}/conversations/{conversation_id}/messages", json=body, timeout=20) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(reply.iter_lines()))
    assert [e["id"] for e in events] == [e["data"]["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["event"] == "stream_end" and events[-1]["data"]["finish_reason"] == "stop"
    shown = [e["data"] for e in events]
    assert without_empty(render(shown, "list my files")) == restored(server, conversation_id)
    message_id = shown[0]["message_id"]
    status = httpx.get(f"{server.url}/conversations/{conversation_id}/turns/{message_id}").json()
    assert status["status"] == "completed" and status["usage"] == shown[-1]["usage"]


@pytest.mark.parametrize("model", ["gpt-4o"])
def test_an_sse_client_that_hangs_up_is_a_socket_leaving(server, fake, model):
    """TURN_DETACH_GRACE=0 here: the provider stream closes within a second of the hang-up;
    a background turn runs on to its end."""
    conversation_id = uuid.uuid4().hex[:9]
    fake.script(text(*(f"w{i} " for i in range(200)), interval=0.05))
    body = {"message": "go on", "model": model, "stream": True}
    with httpx.stream("POST", f"{server.url}/conversations/{conversation_id}/messages", json=body, timeout=20) as reply:
        first = next(sse_events(reply.iter_lines()))
    since = time.time()
    assert closed_early_within(fake, since)
    ended = httpx.get(f"{server.url}/conversations/{conversation_id}/turns/{first['data']['message_id']}").json()
    deadline = time.monotonic() + 5
    while ended["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
        ended = httpx.get(f"{server.url}/conversations/{conversation_id}/turns/{first['data']['message_id']}").json()
    assert ended["status"] == "cancelled"

    fake.script(text(*(f"b{i} " for i in range(20)), interval=0.02))
    started = httpx.post(
        f"{server.url}/conversations/{conversation_id}/messages",
        json={"message": "in the background", "model": model, "background": True},
    )
    assert started.status_code == 202
    with httpx.stream("GET", f"{server.url}/conversations/{conversation_id}/events?after_seq=0", timeout=20) as joined:
        events = list(sse_events(joined.iter_lines()))
    assert [e["id"] for e in events] == list(range(1, 22))
    assert events[-1]["data"]["finish_reason"] == "stop"
    assert httpx.get(f"{server.url}/conversations/{conversation_id}/events?after_seq=21").status_code == 204
