"""Nothing lost: what is stored for each way a turn can end, and what the model is replayed."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from django.utils import timezone

from chat.models import Conversation, SessionItem, Turn, TurnStatus
from chat.store import services
from chat.turn import lease
from chat.turn.journal import Journal
from chat.turn.session import ConversationSession
from tests.chat.frontend import as_shown, render, without_empty
from tests.conftest import connect
from tests.fake_provider import error, text, tools

pytestmark = pytest.mark.django_db(transaction=True)


async def detail(async_client, conversation_id="conv1"):
    body = (await async_client.get(f"/conversations/{conversation_id}")).json()
    return {**body, "messages": as_shown(body["messages"])}


async def test_the_users_message_is_stored_before_the_model_is_called(ws, provider, async_client):
    provider.script(error(401, "bad key"))
    events = await ws.turn("keep me")
    body = await detail(async_client)
    assert body["messages"][0] == {"role": "user", "content": "keep me"}
    # A failed turn with nothing streamed shows the error, as the frontend did.
    assert body["messages"] == without_empty(render(events, "keep me"))
    assert body["messages"][1]["content"].startswith("Error: The provider refused the API key")
    turn = await Turn.objects.aget(id=events[0]["message_id"])
    assert (turn.status, turn.error_code, turn.finish_reason) == ("error", "provider_auth", "error")


async def test_a_failed_turn_keeps_the_streamed_text(ws, provider, async_client):
    provider.script(text("Half an ", "answer", "never finished", cut_after=3))
    events = await ws.turn("hi")
    body = await detail(async_client)
    assert body["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Half an answer"},
        {"role": "assistant", "content": "Error: The provider failed or the connection to it broke; try again."},
    ]
    assert "".join(e.get("content", "") for e in events if e["type"] == "stream") == "Half an answer"
    # The next request replays the text the user saw.
    provider.script(text("ok"))
    await ws.turn("go on")
    replay = provider.requests[-1].body["messages"]
    assert [(m["role"], m["content"]) for m in replay[1:]] == [
        ("user", "hi"),
        ("assistant", "Half an answer"),
        ("user", "go on"),
    ]


async def test_a_cancelled_tool_turn_is_stored_and_replayable(ws, provider, async_client, workspace):
    (workspace / "a.txt").write_text("alpha")
    provider.script(tools(("read_file", {"path": "a.txt"}), text=["Let me read."]), text(*["x"] * 200, interval=0.02))
    await ws.send({"message": "read a"})
    seen = []
    while len([e for e in seen if e["type"] == "final_stream"]) < 2:
        seen.append(await ws.receive())
    await ws.send({"type": "cancel"})
    seen += await ws.until_end()
    body = await detail(async_client)
    assert body["messages"] == without_empty(render(seen, "read a"))
    assert body["messages"][2]["toolResult"] == "alpha"
    turn = await Turn.objects.aget(id=seen[0]["message_id"])
    assert turn.status == TurnStatus.CANCELLED
    provider.script(text("ok"))
    await ws.turn("next")
    replay = provider.requests[-1].body["messages"]
    roles = [m["role"] for m in replay]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert replay[2]["content"] == "Let me read."
    assert replay[2]["tool_calls"][0]["function"]["name"] == "read_file"
    assert replay[3]["content"] == "alpha"
    assert replay[4]["content"].startswith("xx")


async def test_a_turn_whose_lease_lapsed_reads_as_interrupted_and_blocks_nothing(async_client, provider):
    turn, _ = await services.aturn_start(conversation_id="dead1", model="gpt-4o", user_message="are you there?")
    await services.aturn_flush(
        turn_id=turn.id,
        conversation_id="dead1",
        entries=[services.EntryWrite(1, {"kind": "assistant", "content": "I was say"}, new=True)],
        session_items=[],
        usage_rows=[],
    )
    # A live turn (current lease) blocks another turn, from any worker.
    socket = await connect("dead1")
    await socket.send({"message": "hello?"})
    assert (await socket.receive())["code"] == "busy"
    # Its lease lapsed: the process died. A read says so without writing (the reaper will).
    await Turn.objects.filter(id=turn.id).aupdate(heartbeat_at=timezone.now() - timedelta(seconds=20))
    body = await detail(async_client, "dead1")
    assert body["messages"] == [
        {"role": "user", "content": "are you there?"},
        {"role": "assistant", "content": "I was say"},
        {"role": "assistant", "content": f"Error: {services.INTERRUPTED_ERROR}"},
    ]
    assert "live" not in body
    assert (await Turn.objects.aget(id=turn.id)).status == TurnStatus.STREAMING
    provider.script(text("back"))
    events = await socket.turn("hello?")
    assert events[-1]["finish_reason"] == "stop"
    await socket.communicator.disconnect()


async def test_the_heartbeat_saves_partial_text(ws, provider, monkeypatch):
    monkeypatch.setattr(lease, "HEARTBEAT_SECONDS", 0.05)
    provider.script(text(*["tok "] * 40, interval=0.02))
    await ws.send({"message": "stream"})
    first = await ws.receive()
    await asyncio.sleep(0.3)
    turn = await Turn.objects.aget(id=first["message_id"])
    assert timezone.now() - turn.heartbeat_at < timedelta(seconds=1)
    partial = await turn.messages.filter(kind="assistant").afirst()
    assert partial is not None and partial.content.startswith("tok tok")
    # The replay items so far are saved too: a process that dies now leaves the question.
    saved = [item async for item in SessionItem.objects.filter(turn=turn).values_list("data", flat=True)]
    assert saved == [{"role": "user", "content": "stream"}]
    assert (await ws.until_end())[-1]["finish_reason"] == "stop"
    # The end's save completes the row the heartbeats wrote.
    assert [m.content async for m in turn.messages.filter(kind="assistant")] == ["tok " * 40]


async def test_a_heartbeat_write_still_running_at_the_end_does_not_overwrite_the_reply(ws, provider, monkeypatch):
    # A database call keeps running in its thread when the awaiting task is cancelled; model
    # that with a slow write the heartbeat's cancel cannot stop.
    monkeypatch.setattr(lease, "HEARTBEAT_SECONDS", 0.05)
    original = services.aturn_flush

    async def slow_flush(**kwargs):
        if kwargs["end"] is None:
            await asyncio.sleep(0.3)
        return await original(**kwargs)

    monkeypatch.setattr(services, "aturn_flush", slow_flush)
    provider.script(text("Hello", " world", interval=0.04))
    events = await ws.turn("hi")
    assert events[-1]["finish_reason"] == "stop"
    turn = await Turn.objects.aget(id=events[-1]["message_id"])
    reply = await turn.messages.aget(kind="assistant")
    assert reply.content == "Hello world"
    saved = [item async for item in SessionItem.objects.filter(turn=turn).order_by("id").values_list("data", flat=True)]
    assert [item.get("role") for item in saved] == ["user", "assistant"]


async def test_the_first_message_titles_a_conversation_once():
    await services.aconversation_create(conversation_id="t1", model="gpt-4o")  # POST /conversations: no title
    first, _ = await services.aturn_start(conversation_id="t1", model="gpt-4o", user_message="How do  I\nbake bread?")
    await services.aturn_flush(
        turn_id=first.id,
        conversation_id="t1",
        entries=[],
        session_items=[],
        usage_rows=[],
        end=services.TurnEnd(TurnStatus.COMPLETE, "stop"),
    )
    second_started = timezone.now()
    await services.aturn_start(conversation_id="t1", model="gpt-4o-mini", user_message="And cake?")
    conversation = await Conversation.objects.aget(id="t1")
    assert conversation.title == "How do I bake bread?" and conversation.model == "gpt-4o-mini"
    assert conversation.updated_at >= second_started  # it moves to the top of the list


async def test_session_round_trip():
    await services.aturn_start(conversation_id="s1", model="gpt-4o", user_message="hi")
    session = ConversationSession(
        conversation_id="s1", journal=Journal(turn_id=None, conversation_id="s1"), max_tokens=100_000
    )
    assert await session.get_items() == []
    await session.add_items([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    await session.add_items([{"type": "function_call", "call_id": "c1", "name": "ls", "arguments": "{}"}])
    assert [i.get("content", i.get("name")) for i in await session.get_items()] == ["a", "b", "ls"]
    assert await session.get_items(limit=1) == [
        {"type": "function_call", "call_id": "c1", "name": "ls", "arguments": "{}"}
    ]
    assert (await session.pop_item())["name"] == "ls"
    assert len(await session.get_items()) == 2
    await session.clear_session()
    assert await session.get_items() == []
    assert await session.pop_item() is None


async def test_long_history_is_trimmed_to_the_context_window_oldest_first(ws, provider):
    big = "lorem ipsum " * 400  # ~1600 tokens by the estimate
    for index in range(4):
        provider.script(tools(("ls", {})), text(f"answer {index}"))
        await ws.turn(f"q{index} {big}")
    provider.script(text("ok"))
    await ws.communicator.disconnect()
    from django.test import override_settings

    from tests.conftest import catalog_file

    small = {"gpt-4o": {"provider": "openai", "name": "tiny", "maxTokens": 6000}}
    import pathlib
    import tempfile

    with override_settings(MODELS_FILE=catalog_file(pathlib.Path(tempfile.mkdtemp()), small, "gpt-4o")):
        socket = await connect()
        await socket.turn("last")
        await socket.communicator.disconnect()
    replay = provider.requests[-1].body["messages"]
    users = [m["content"][:2] for m in replay if m["role"] == "user"]
    assert users[0] != "q0" and users[-1] == "la"
    # Every tool call that is replayed still has its output right after it.
    for index, message in enumerate(replay):
        if message.get("tool_calls"):
            assert replay[index + 1]["role"] == "tool"
            assert replay[index + 1]["tool_call_id"] == message["tool_calls"][0]["id"]


async def test_two_conversations_never_mix(provider):
    alice, bob = await connect("alice"), await connect("bob")
    provider.script(text("A1"))
    await alice.turn("alice says")
    provider.script(text("B1"))
    await bob.turn("bob says")
    bob_request = provider.requests[-1].body["messages"]
    assert [m["content"] for m in bob_request if m["role"] != "system"] == ["bob says"]
    await alice.communicator.disconnect()
    await bob.communicator.disconnect()
