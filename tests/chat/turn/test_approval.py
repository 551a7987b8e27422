"""Tool approval in one process: the turn pauses before a tool that needs the user's approval,
with no provider call open, and goes on (same turn, seq going on) once answered, on a socket
or over REST; declined, the model reads why; the wait holds through a new message, a cancel,
an unknown or foreign answer, and a time-out."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import override_settings

from accounts.tokens import token_create
from chat.models import ApprovalStatus, SessionItem, ToolApproval, Turn, TurnStatus
from chat.runtime import runtime
from chat.turn import approvals_expire
from chat.turn.relay import log_key
from tests.accounts.sockets import open_socket
from tests.chat.frontend import as_shown, render, without_empty
from tests.conftest import Client, connect
from tests.fake_provider import FakeProvider, text, tools
from tools.base import BaseTool, ToolArgs, ToolResult
from tools.registry import registry

pytestmark = [pytest.mark.django_db(transaction=True)]

READ = ("read_file", {"path": "todo.md"})


@pytest.fixture
def gated(provider: FakeProvider, workspace: Any) -> Any:
    (workspace / "todo.md").write_text("- write tests\n")
    with override_settings(TOOLS_REQUIRE_APPROVAL=frozenset({"read_file"})):
        yield provider


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


async def until_request(client: Client, count: int = 1) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while sum(event["type"] == "tool_approval_request" for event in events) < count:
        events.append(await client.receive())
    return events


def answer(request: dict[str, Any], approved: bool = True, **extra: Any) -> dict[str, Any]:
    return {"type": "tool_approval", "approval_id": request["approval_id"], "approved": approved, **extra}


async def test_an_approved_call_runs_and_the_turn_goes_on_as_if_it_never_paused(gated, async_client):
    gated.script(tools(READ, text=["Checking."]), text("You need to ", "write tests."))
    ws = await connect("appr1", protocol=2)
    await ws.send({"message": "What is on my list?"})
    paused = await until_request(ws)
    assert types(paused) == ["stream", "tool_call", "tool_approval_request"]
    request = paused[-1]
    assert {k: request[k] for k in ("call_id", "tool_name", "arguments")} == {
        "call_id": paused[1]["call_id"],
        "tool_name": "read_file",
        "arguments": {"path": "todo.md"},
    }
    await asyncio.sleep(0.3)
    assert len(gated.requests) == 1  # no model request while it waits
    assert (await Turn.objects.aget(id=request["message_id"])).status == TurnStatus.WAITING
    body = (await async_client.get("/conversations/appr1")).json()
    assert body["pending_approvals"] == [
        {
            "approval_id": request["approval_id"],
            "call_id": request["call_id"],
            "tool_name": "read_file",
            "arguments": {"path": "todo.md"},
            "message_id": request["message_id"],
        }
    ]
    assert body["live"] == {"message_id": request["message_id"], "seq": 3}

    await ws.send(answer(request))
    rest = await ws.until_end()
    await ws.communicator.disconnect()
    assert types(rest) == ["tool_result", "final_response_start", "final_stream", "final_stream", "stream_end"]
    assert rest[0]["ok"] is True and rest[0]["result"] == "- write tests\n"
    events = paused + rest
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {e["message_id"] for e in events} == {request["message_id"]}
    usage = rest[-1]["usage"]
    assert usage["requests"] == 2 and usage["input_tokens"] == 24 and usage["output_tokens"] == 14
    assert rest[-1]["finish_reason"] == "stop"
    body = (await async_client.get("/conversations/appr1")).json()
    assert as_shown(body["messages"]) == without_empty(render(events, "What is on my list?"))
    assert body["pending_approvals"] == [] and "live" not in body
    assert body["usage"]["requests"] == 2

    # The model was replayed exactly what a run that never paused sends it.
    with override_settings(TOOLS_REQUIRE_APPROVAL=frozenset()):
        gated.script(tools(READ, text=["Checking."]), text("You need to ", "write tests."))
        plain = await connect("appr1plain")
        await plain.turn("What is on my list?")
        await plain.communicator.disconnect()
    after_pause, unpaused = gated.requests[1].body, gated.requests[3].body
    call_ids = [body["messages"][2]["tool_calls"][0]["id"] for body in (after_pause, unpaused)]
    assert _without(after_pause, call_ids) == _without(unpaused, call_ids)


def _without(body: dict[str, Any], call_ids: list[str]) -> str:
    """A request's messages, without the call ids (which differ from run to run)."""
    shown = json.dumps(body["messages"])
    for call_id in call_ids:
        shown = shown.replace(call_id, "")
    return shown


async def test_a_declined_call_tells_the_model_why_and_the_turn_goes_on(gated, async_client):
    gated.script(tools(READ), text("Alright, I will not look."))
    ws = await connect("appr2", protocol=2)
    await ws.send({"message": "What is on my list?"})
    request = (await until_request(ws))[-1]
    await ws.send(answer(request, approved=False, reason="private"))
    rest = await ws.until_end()
    await ws.communicator.disconnect()
    result = rest[0]
    assert result["type"] == "tool_result" and result["ok"] is False
    assert "declined" in result["result"] and "private" in result["result"]
    replayed = gated.requests[1].body["messages"][-1]
    assert replayed["role"] == "tool" and replayed["content"] == result["result"]
    assert rest[-1]["finish_reason"] == "stop"
    restored = (await async_client.get("/conversations/appr2")).json()["messages"]
    assert [m.get("toolResult") for m in restored if m["role"] == "tool"] == [result["result"]]


async def test_several_calls_of_one_step_each_get_a_request_and_it_goes_on_when_all_are_answered(gated):
    gated.script(tools(READ, ("ls", {}), ("read_file", {"path": "none.md"})), text("Done."))
    ws = await connect("appr3", protocol=2)
    await ws.send({"message": "look"})
    paused = await until_request(ws, 2)
    requests = [e for e in paused if e["type"] == "tool_approval_request"]
    calls = [e for e in paused if e["type"] == "tool_call"]
    assert [c["tool_name"] for c in calls] == ["read_file", "ls", "read_file"]
    assert [r["call_id"] for r in requests] == [calls[0]["call_id"], calls[2]["call_id"]]
    assert [e["call_id"] for e in paused if e["type"] == "tool_result"] == [calls[1]["call_id"]]  # ls ran
    await ws.send(answer(requests[1], approved=False))
    assert await ws.communicator.receive_nothing(0.5)  # one still waits
    assert len(gated.requests) == 1
    await ws.send(answer(requests[0]))
    rest = await ws.until_end()
    await ws.communicator.disconnect()
    results = {e["call_id"]: e["ok"] for e in rest if e["type"] == "tool_result"}
    assert results == {calls[0]["call_id"]: True, calls[2]["call_id"]: False}
    tool_messages = [m for m in gated.requests[1].body["messages"] if m["role"] == "tool"]
    assert len(tool_messages) == 3
    assert rest[-1]["finish_reason"] == "stop"


async def test_remember_conversation_approves_the_tools_later_calls(gated):
    gated.script(tools(READ), text("One."), tools(READ), text("Two."))
    ws = await connect("appr4", protocol=2)
    await ws.send({"message": "first"})
    request = (await until_request(ws))[-1]
    await ws.send(answer(request, remember="conversation"))
    await ws.until_end()
    second = await ws.turn("second")
    await ws.communicator.disconnect()
    assert "tool_approval_request" not in types(second)
    assert second[-1]["finish_reason"] == "stop"


async def test_while_it_waits_a_new_message_is_busy_and_a_cancel_ends_it(gated, async_client):
    gated.script(tools(READ, text=["Let me see."]), text("Next answer."))
    ws = await connect("appr5", protocol=2)
    await ws.send({"message": "What is on my list?"})
    paused = await until_request(ws)
    await ws.send({"message": "another"})
    busy = await ws.receive()
    assert busy["type"] == "error" and busy["code"] == "busy" and "message_id" not in busy
    await ws.send({"type": "cancel"})
    end = await ws.receive()
    assert end["type"] == "stream_end" and end["finish_reason"] == "cancelled"
    assert end["seq"] == paused[-1]["seq"] + 1 and end["message_id"] == paused[-1]["message_id"]
    assert end["usage"]["requests"] == 1
    approval = await ToolApproval.objects.aget(id=paused[-1]["approval_id"])
    assert approval.status == ApprovalStatus.CANCELLED
    await ws.send(answer(paused[-1]))
    late = await ws.receive()
    assert (late["type"], late["code"]) == ("error", "approval_answered")
    body = (await async_client.get("/conversations/appr5")).json()
    assert body["pending_approvals"] == [] and "live" not in body
    assert as_shown(body["messages"]) == without_empty(render([*paused, end], "What is on my list?"))
    # The next turn replays the cancelled call with an output, as after any cancel.
    again = await ws.turn("next")
    await ws.communicator.disconnect()
    assert again[-1]["finish_reason"] == "stop"
    replay = gated.requests[-1].body["messages"]
    assert [m["role"] for m in replay] == ["system", "user", "assistant", "tool", "user"]
    assert await SessionItem.objects.filter(conversation_id="appr5").acount() == 6


async def test_an_unknown_or_foreign_approval_id_is_an_error_and_changes_nothing(gated, async_client):
    gated.script(tools(READ), text("Done."))
    ws = await connect("appr6", protocol=2)
    other = await connect("appr6other", protocol=2)
    await ws.send({"message": "look"})
    request = (await until_request(ws))[-1]
    for approval_id in ("not-an-id", "6c0d7c8e-0000-4000-8000-000000000000"):
        await ws.send({"type": "tool_approval", "approval_id": approval_id, "approved": True})
        error = await ws.receive()
        assert (error["type"], error["code"]) == ("error", "unknown_approval")
    await other.send(answer(request))  # another conversation's socket
    error = await other.receive()
    assert (error["type"], error["code"]) == ("error", "unknown_approval")
    response = await async_client.post(
        f"/conversations/appr6other/approvals/{request['approval_id']}",
        {"approved": True},
        content_type="application/json",
    )
    assert response.status_code == 404 and response.json()["code"] == "unknown_approval"
    await ws.send({"type": "tool_approval", "approval_id": request["approval_id"]})
    assert (await ws.receive())["code"] == "invalid_message"
    assert (await ToolApproval.objects.aget(id=request["approval_id"])).status == ApprovalStatus.PENDING
    # Answered over REST: 202, and the turn goes on for the sockets.
    response = await async_client.post(
        f"/conversations/appr6/approvals/{request['approval_id']}",
        {"approved": True},
        content_type="application/json",
    )
    assert response.status_code == 202
    rest = await ws.until_end()
    assert rest[0]["type"] == "tool_result" and rest[-1]["finish_reason"] == "stop"
    again = await async_client.post(
        f"/conversations/appr6/approvals/{request['approval_id']}",
        {"approved": False},
        content_type="application/json",
    )
    assert again.status_code == 409 and again.json()["code"] == "approval_answered"
    await ws.communicator.disconnect()
    await other.communicator.disconnect()


async def test_two_answers_racing_resume_the_turn_once(gated):
    gated.script(tools(READ), text("Done."))
    ws = await connect("appr7", protocol=2)
    await ws.send({"message": "look"})
    request = (await until_request(ws))[-1]
    second = await connect("appr7", protocol=2)
    await asyncio.gather(ws.send(answer(request)), second.send(answer(request, approved=False)))
    seen, others = await ws.until_end(), await second.until_end()
    for client in (ws, second):  # the refused answer's error may come after the turn's end
        if not await client.communicator.receive_nothing(0.3):
            seen.append(await client.receive())
    refused = [e for e in seen + others if e["type"] == "error"]
    assert [e["code"] for e in refused] == ["approval_answered"]
    assert types([e for e in seen if "message_id" in e]).count("tool_result") == 1
    assert len(gated.requests) == 2
    await ws.communicator.disconnect()
    await second.communicator.disconnect()


async def test_a_request_left_unanswered_past_the_time_out_is_declined(gated):
    gated.script(tools(READ), text("I could not look."))
    ws = await connect("appr8", protocol=2)
    await ws.send({"message": "look"})
    await until_request(ws)
    with override_settings(TOOL_APPROVAL_TIMEOUT=3600):
        await approvals_expire()
    assert await ws.communicator.receive_nothing(0.3)
    with override_settings(TOOL_APPROVAL_TIMEOUT=0.01):
        await asyncio.sleep(0.05)
        await approvals_expire()
    rest = await ws.until_end()
    await ws.communicator.disconnect()
    assert rest[0]["ok"] is False and "nobody answered" in rest[0]["result"]
    assert rest[-1]["finish_reason"] == "stop"


async def test_with_users_only_the_conversations_owner_can_answer(gated, async_client, django_user_model):
    alice = await django_user_model.objects.acreate(username="alice")
    bob = await django_user_model.objects.acreate(username="bob")
    (_, alice_raw), (_, bob_raw) = [await sync_to_async(token_create)(user=user) for user in (alice, bob)]
    gated.script(tools(READ), text("Done."))
    with override_settings(AUTH_MODE="django"):
        accepted, _, socket = await open_socket(
            "/ws/appr9", headers=[(b"authorization", f"Bearer {alice_raw}".encode())]
        )
        assert accepted
        ws = Client(socket)
        assert (await ws.receive())["type"] == "connected"
        await ws.send({"type": "hello", "protocol": 2})
        await ws.receive()
        await ws.send({"message": "look"})
        request = (await until_request(ws))[-1]
        url = f"/conversations/appr9/approvals/{request['approval_id']}"
        refused = await async_client.post(
            url, {"approved": True}, content_type="application/json", headers={"Authorization": f"Bearer {bob_raw}"}
        )
        assert refused.status_code == 404 and refused.json()["code"] == "unknown_approval"
        assert (await ToolApproval.objects.aget(id=request["approval_id"])).status == ApprovalStatus.PENDING
        taken = await async_client.post(
            url, {"approved": True}, content_type="application/json", headers={"Authorization": f"Bearer {alice_raw}"}
        )
        assert taken.status_code == 202
        rest = await ws.until_end()
        await socket.disconnect()
    assert rest[0]["ok"] is True and rest[-1]["finish_reason"] == "stop"


class _Danger(BaseTool[ToolArgs]):
    name = "danger"
    description = "Does something the user must allow."
    args_model = ToolArgs
    requires_approval = True

    async def execute(self, args: ToolArgs) -> ToolResult:
        return ToolResult.success("done it")


async def test_a_tool_class_can_require_approval_without_the_setting(provider):
    registry.register(_Danger)
    try:
        provider.script(tools(("danger", {}), ("ls", {})), text("Done."))
        ws = await connect("appr10", protocol=2)
        await ws.send({"message": "go"})
        paused = await until_request(ws)
        assert [e["tool_name"] for e in paused if e["type"] == "tool_approval_request"] == ["danger"]
        await ws.send(answer(paused[-1]))
        rest = await ws.until_end()
        await ws.communicator.disconnect()
    finally:
        registry.unregister("danger")
    assert [(e["tool_name"], e["result"]) for e in rest if e["type"] == "tool_result"] == [("danger", "done it")]


@pytest.mark.skipif(not settings.REDIS_URL, reason="the event log other workers read is in Redis")
async def test_a_wait_longer_than_the_event_logs_life_writes_its_frames_again(gated):
    """The conversation's Redis stream expires 5 minutes after its last write; a worker that
    never saw the turn could not place what follows the wait without its first frames."""
    gated.script(tools(READ), text("Done."))
    ws = await connect("appr11", protocol=2)
    await ws.send({"message": "look"})
    paused = await until_request(ws)
    client = runtime().sync_redis()
    await asyncio.sleep(0.1)  # the relay's batch is written
    client.delete(log_key("appr11"))  # as if it had expired
    await ws.send(answer(paused[-1]))
    rest = await ws.until_end()
    await ws.communicator.disconnect()
    await asyncio.sleep(0.1)
    logged = [json.loads(fields[b"frame"]) for _, fields in client.xrange(log_key("appr11"))]
    assert logged == paused + rest
