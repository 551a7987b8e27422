"""Tool approval on each server the README names (runserver, daphne, uvicorn), driven by real
WebSocket and HTTP clients: the turn waits for the user's answer through a reload, goes on
when it comes (on a socket or over REST), and survives the server's restart while it waits.
What the sockets saw, rendered as the frontend renders it, is what a reload restores."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection

from tests.chat.frontend import as_shown, render, without_empty
from tests.fake_provider import FakeProvider, text, tools
from tests.servers import SERVERS, Server
from tests.test_end_to_end import open_socket, restored, server_env, until_end

READ = ("read_file", {"path": "todo.md"})
# A test's time includes its module fixture's server start, and the restart test starts two
# (each a minute or more on a loaded machine).
pytestmark = pytest.mark.timeout(360)


def approval_env(fake_server: FakeProvider, tmp_path: Path, name: str) -> dict[str, str]:
    return {**server_env(fake_server, tmp_path, name), "TOOLS_REQUIRE_APPROVAL": "read_file"}


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest, fake_server: FakeProvider, tmp_path_factory) -> Iterator[Server]:
    tmp_path = tmp_path_factory.mktemp(request.param)
    env = approval_env(fake_server, tmp_path, f"appr_{request.param}")
    running = Server(request.param, env, tmp_path / "log", start_timeout=180)
    yield running
    running.stop()


def until_request(ws: ClientConnection) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while not events or events[-1]["type"] != "tool_approval_request":
        events.append(json.loads(ws.recv(timeout=20)))
    return events


def answer(request: dict[str, Any], approved: bool = True) -> str:
    return json.dumps({"type": "tool_approval", "approval_id": request["approval_id"], "approved": approved})


def conversation(server: Server, conversation_id: str) -> dict[str, Any]:
    return httpx.get(f"{server.url}/conversations/{conversation_id}", timeout=5).json()


def test_the_wait_outlives_a_reload_and_the_answer_on_the_new_socket_goes_on(server, fake):
    conversation_id = uuid.uuid4().hex
    fake.script(tools(READ, text=["Checking."]), text("You need to ", "write tests."))
    with open_socket(server, conversation_id, protocol=2) as ws:
        ws.send(json.dumps({"message": "What is on my list?", "model": "gpt-4o"}))
        paused = until_request(ws)
    time.sleep(0.5)  # no socket (TURN_DETACH_GRACE=0): a running turn would be cancelled now
    body = conversation(server, conversation_id)
    request = paused[-1]
    assert [a["approval_id"] for a in body["pending_approvals"]] == [request["approval_id"]]
    assert body["live"] == {"message_id": request["message_id"], "seq": request["seq"]}
    assert as_shown(body["messages"]) == without_empty(render(paused, "What is on my list?"))
    assert len(fake.requests) == 1
    with open_socket(server, conversation_id, protocol=2) as ws:
        ws.send(answer(request))
        rest = until_end(ws)
    assert [e["type"] for e in rest] == [
        "tool_result", "final_response_start", "final_stream", "final_stream", "stream_end",
    ]  # fmt: skip
    assert rest[0]["ok"] is True and rest[-1]["finish_reason"] == "stop"
    events = paused + rest
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {e["message_id"] for e in events} == {request["message_id"]}
    assert rest[-1]["usage"]["requests"] == 2
    assert restored(server, conversation_id) == without_empty(render(events, "What is on my list?"))
    assert conversation(server, conversation_id)["pending_approvals"] == []


def test_an_answer_over_rest_goes_on_for_the_sockets(server, fake):
    conversation_id = uuid.uuid4().hex
    fake.script(tools(READ), text("Fine, I will not look."))
    with open_socket(server, conversation_id, protocol=2) as ws:
        ws.send(json.dumps({"message": "look", "model": "gpt-4o"}))
        request = until_request(ws)[-1]
        url = f"{server.url}/conversations/{conversation_id}/approvals/{request['approval_id']}"
        declined = httpx.post(url, json={"approved": False, "reason": "not now"}, timeout=5)
        rest = until_end(ws)
        again = httpx.post(url, json={"approved": True}, timeout=5)
    assert declined.status_code == 202
    assert again.status_code == 409 and again.json()["code"] == "approval_answered"
    assert rest[0]["type"] == "tool_result" and rest[0]["ok"] is False and "not now" in rest[0]["result"]
    assert rest[-1]["finish_reason"] == "stop"
    assert fake.requests[-1].body["messages"][-1]["content"] == rest[0]["result"]


def test_a_waiting_turn_survives_a_restart_onto_another_server(fake_server, tmp_path):
    fake_server.reset()
    env = approval_env(fake_server, tmp_path, "appr_restart")
    fake_server.script(tools(READ, text=["Checking."]), text("You need to write tests."))
    conversation_id = uuid.uuid4().hex
    first = Server("daphne", env, tmp_path / "daphne.log", start_timeout=180)
    try:
        with open_socket(first, conversation_id, protocol=2) as ws:
            ws.send(json.dumps({"message": "What is on my list?", "model": "gpt-4o"}))
            paused = until_request(ws)
    finally:
        first.stop()
    second = Server("uvicorn", env, tmp_path / "uvicorn.log", start_timeout=180)
    try:
        body = conversation(second, conversation_id)
        request = body["pending_approvals"][0]
        assert request["approval_id"] == paused[-1]["approval_id"]
        with open_socket(second, conversation_id, protocol=2) as ws:
            ws.send(answer(request))
            rest = until_end(ws)
        shown = restored(second, conversation_id)
    finally:
        second.stop()
    events = paused + rest
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert rest[0]["result"] == "- write tests\n" and rest[-1]["finish_reason"] == "stop"
    assert rest[-1]["usage"]["requests"] == 2
    assert shown == without_empty(render(events, "What is on my list?"))
    replay = fake_server.requests[-1].body["messages"]
    assert [m["role"] for m in replay] == ["system", "user", "assistant", "tool"]
    fake_server.reset()
