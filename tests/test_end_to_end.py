"""The real server as a user runs it: daphne, then uvicorn after a restart, driven by a real
WebSocket client doing what the frontend does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from websockets.sync.client import connect

from tests.conftest import catalog_file
from tests.fake_provider import FakeProvider, text, tools
from tests.servers import PROJECT, Server


def database_url(tmp_path: Path) -> str:
    """A database of its own: a fresh SQLite file, or a fresh PostgreSQL database when the
    suite runs on PostgreSQL."""
    configured = os.environ.get("DATABASE_URL", "")
    if not configured.startswith("postgres"):
        return f"sqlite:///{tmp_path / 'e2e.sqlite3'}"
    base, _, name = configured.rpartition("/")
    # Named after the configured database: runs on other databases of the server (other
    # checkouts' suites) must not drop each other's.
    e2e = f"{name}_e2e"
    with psycopg.connect(configured, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{e2e}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{e2e}"')
    return f"{base}/{e2e}"


@pytest.fixture
def server_env(fake_server: FakeProvider, tmp_path: Path) -> Iterator[dict[str, str]]:
    fake_server.reset()
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "todo.md").write_text("- write tests\n")
    models = {"gpt-4o": {"provider": "openai", "name": "GPT-4o", "maxTokens": 128000}}
    env = {
        **os.environ,
        "DATABASE_URL": database_url(tmp_path),
        "OPENAI_API_KEY": "sk-e2e-test-key",
        "OPENAI_BASE_URL": f"{fake_server.url}/v1",
        "MODELS_FILE": str(catalog_file(tmp_path, models, "gpt-4o")),
        "TOOLS_ALLOWED_DIRS": str(workspace),
        "PROVIDER_RETRIES": "0",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=PROJECT, env=env, check=True)
    yield env
    fake_server.reset()


def chat_turn(server: Server, conversation_id: str, message: str) -> list[dict]:
    origin = {"Origin": "http://localhost:1420"}
    with connect(f"ws://127.0.0.1:{server.port}/ws/{conversation_id}", additional_headers=origin, open_timeout=5) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "connected"
        ws.send(json.dumps({"message": message, "model": "gpt-4o"}))
        events = []
        while True:
            event = json.loads(ws.recv(timeout=20))
            events.append(event)
            if event["type"] == "stream_end":
                return events


def test_a_tool_turn_over_a_real_socket_survives_a_restart(server_env, fake_server, tmp_path):
    fake_server.script(
        tools(("read_file", {"path": "todo.md"}), text=["Checking."]), text("You need to ", "write tests.")
    )
    first = Server("daphne", server_env, tmp_path / "daphne.log")
    try:
        created = httpx.post(f"{first.url}/conversations", json={"session_id": "e2e123abc", "model": "gpt-4o"})
        assert created.status_code == 201
        events = chat_turn(first, "e2e123abc", "What is on my list?")
    finally:
        first.stop()
    assert [e["type"] for e in events] == [
        "stream",
        "tool_call",
        "tool_result",
        "final_response_start",
        "final_stream",
        "final_stream",
        "stream_end",
    ]
    assert events[2]["result"] == "- write tests\n"

    fake_server.script(text("Yes, tests."))
    second = Server("uvicorn", server_env, tmp_path / "uvicorn.log")
    try:
        events = chat_turn(second, "e2e123abc", "Anything else?")
        history = httpx.get(f"{second.url}/conversations/e2e123abc").json()
        listed = httpx.get(f"{second.url}/conversations").json()["conversations"]
    finally:
        second.stop()
    assert events[-1]["finish_reason"] == "stop"
    replay = fake_server.requests[-1].body["messages"]
    assert [m["role"] for m in replay] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert replay[2]["tool_calls"][0]["function"]["name"] == "read_file"
    assert replay[3]["content"] == "- write tests\n"
    assert [m["role"] for m in history["messages"]] == ["user", "assistant", "tool", "assistant", "user", "assistant"]
    assert listed[0]["id"] == "e2e123abc" and listed[0]["message_count"] == 6
