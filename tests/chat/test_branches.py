"""Branches (issue 30): regenerate, edit, switch, fork; the model is sent exactly the active path."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from chat.models import Conversation, Message, SessionItem, Turn, UsageRecord
from tests.conftest import Client, connect
from tests.fake_provider import FakeProvider, text, tools

pytestmark = pytest.mark.django_db(transaction=True)


def sent(provider: FakeProvider, index: int = -1) -> str:
    """All a recorded request held, as text (any provider's format)."""
    return json.dumps(provider.requests[index].body, ensure_ascii=False)


async def answer(socket: Client, frame: dict[str, Any]) -> list[dict[str, Any]]:
    await socket.send(frame)
    return await socket.until_end()


async def get(async_client: Any, conversation_id: str = "conv1") -> dict[str, Any]:
    return (await async_client.get(f"/conversations/{conversation_id}")).json()


async def post(async_client: Any, path: str, body: dict[str, Any]) -> Any:
    return await async_client.post(path, body, content_type="application/json")


def turn_ids(body: dict[str, Any]) -> list[str]:
    """The message_id of each answer on the active path, in order."""
    return list(dict.fromkeys(entry["message_id"] for entry in body["messages"] if "message_id" in entry))


def user_ids(body: dict[str, Any]) -> list[str]:
    return [entry["id"] for entry in body["messages"] if entry["role"] == "user"]


async def tool_turn_then_question(ws: Client, provider: FakeProvider, workspace: Any, model: str) -> list[str]:
    """Two turns: a tool call (read_file), then "and then?" answered "ANSWER-A"."""
    (workspace / "notes.md").write_text("remember the milk")
    provider.script(tools(("read_file", {"path": "notes.md"})), text("You noted milk."), text("ANSWER-A"))
    first = await ws.turn("what did I note?", model=model)
    second = await ws.turn("and then?", model=model)
    return [first[-1]["message_id"], second[-1]["message_id"]]


@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet-4-5"])  # the OpenAI route and a LiteLLM one
async def test_the_model_is_sent_exactly_the_active_path(ws, provider, workspace, async_client, model):
    first, second = await tool_turn_then_question(ws, provider, workspace, model)

    provider.script(text("ANSWER-B"))
    regenerated = await answer(ws, {"type": "regenerate", "message_id": second})
    assert regenerated[-1]["finish_reason"] == "stop" and regenerated[-1]["message_id"] not in (first, second)
    request = sent(provider)
    assert "remember the milk" in request and "and then?" in request  # the tool call on the path, the question
    assert request.count("and then?") == 1 and "ANSWER-A" not in request

    body = await get(async_client)
    question = user_ids(body)[1]
    provider.script(text("ANSWER-C"))
    edited = await answer(ws, {"type": "edit", "message_id": question, "message": "EDITED instead?"})
    request = sent(provider)
    assert "remember the milk" in request and "EDITED instead?" in request
    assert "and then?" not in request and "ANSWER-A" not in request and "ANSWER-B" not in request

    provider.script(text("ANSWER-D"))
    await ws.turn("NEXT one", model=model)
    request = sent(provider)
    assert "EDITED instead?" in request and "ANSWER-C" in request and "NEXT one" in request
    assert "and then?" not in request and "ANSWER-A" not in request and "ANSWER-B" not in request

    # Back to the first answer: the path through it is shown, and the next turn follows it.
    switched = await post(async_client, "/conversations/conv1/branch", {"message_id": second})
    assert switched.status_code == 200
    assert [entry["content"] for entry in switched.json()["messages"]][-2:] == ["and then?", "ANSWER-A"]
    provider.script(text("ANSWER-E"))
    await ws.turn("after A", model=model)
    request = sent(provider)
    assert "ANSWER-A" in request and "after A" in request and "remember the milk" in request
    for other in ("ANSWER-B", "ANSWER-C", "ANSWER-D", "EDITED instead?", "NEXT one"):
        assert other not in request
    assert edited[-1]["message_id"] not in turn_ids(await get(async_client))


async def test_the_active_path_shows_ids_and_which_version_each_entry_is(ws, provider, async_client):
    provider.script(text("one"), text("two"), text("three"))
    first = (await ws.turn("hello"))[-1]["message_id"]
    await answer(ws, {"type": "regenerate", "message_id": first})
    body = await get(async_client)
    user, reply = body["messages"]
    assert user["role"] == "user" and user["content"] == "hello" and "branch" not in user
    assert reply["content"] == "two" and reply["branch"] == {"index": 2, "count": 2}
    assert reply["message_id"] != first

    await answer(ws, {"type": "edit", "message_id": user["id"], "message": "hi there"})
    user, reply = (await get(async_client))["messages"]
    assert user["content"] == "hi there" and user["branch"] == {"index": 2, "count": 2}
    assert reply["content"] == "three" and "branch" not in reply

    back = (await post(async_client, "/conversations/conv1/branch", {"message_id": first})).json()
    assert [(e["content"], e.get("branch")) for e in back["messages"]] == [
        ("hello", {"index": 1, "count": 2}),
        ("one", {"index": 1, "count": 2}),
    ]
    assert back["messages"][1]["message_id"] == first


async def test_switching_to_a_user_message_shows_its_newest_answer(ws, provider, async_client):
    provider.script(text("one"), text("two"), text("reply to edit"))
    first = (await ws.turn("hello"))[-1]["message_id"]
    await answer(ws, {"type": "regenerate", "message_id": first})
    hello = user_ids(await get(async_client))[0]
    await answer(ws, {"type": "edit", "message_id": hello, "message": "edited"})
    body = (await post(async_client, "/conversations/conv1/branch", {"message_id": hello})).json()
    assert [entry["content"] for entry in body["messages"]] == ["hello", "two"]
    assert (await get(async_client))["messages"] == body["messages"]


async def test_the_tree_lists_every_node_with_its_usage(ws, provider, async_client):
    provider.script(text("one", usage=(10, 5, 0)), text("two", usage=(20, 8, 0)), text("three", usage=(30, 9, 0)))
    first = (await ws.turn("hello"))[-1]["message_id"]
    second = (await answer(ws, {"type": "regenerate", "message_id": first}))[-1]["message_id"]
    hello = user_ids(await get(async_client))[0]
    third = (await answer(ws, {"type": "edit", "message_id": hello, "message": "hey"}))[-1]["message_id"]
    tree = (await async_client.get("/conversations/conv1/tree")).json()
    assert tree["active_leaf"] == third
    by_id = {node["id"]: node for node in tree["nodes"]}
    assert set(by_id) == {hello, first, second, third, user_ids(await get(async_client))[0]}
    assert by_id[first]["parent_id"] == by_id[second]["parent_id"] == hello
    assert by_id[hello]["parent_id"] is None and by_id[hello]["role"] == "user" and by_id[hello]["usage"] is None
    assert by_id[first]["usage"]["input_tokens"] == 10 and by_id[second]["usage"]["output_tokens"] == 8
    assert by_id[third]["role"] == "assistant" and by_id[third]["usage"]["total_tokens"] == 39
    # The conversation's total counts every branch; the active path's only its own.
    assert tree["usage"]["input_tokens"] == 60 and tree["active_usage"]["input_tokens"] == 30
    assert (await get(async_client))["usage"]["input_tokens"] == 60


async def test_a_fork_holds_the_path_and_its_replay(ws, provider, workspace, async_client):
    _, second = await tool_turn_then_question(ws, provider, workspace, "gpt-4o")
    provider.script(text("ANSWER-B"))
    await answer(ws, {"type": "regenerate", "message_id": second})
    response = await post(async_client, "/conversations/conv1/fork", {"message_id": second, "session_id": "forked1"})
    assert response.status_code == 201
    fork = response.json()
    assert fork["id"] == "forked1"
    assert [entry["content"] for entry in fork["messages"]][-2:] == ["and then?", "ANSWER-A"]
    assert fork["usage"]["requests"] == 0  # its requests were the original's
    assert (await async_client.get("/conversations/forked1")).json()["messages"] == fork["messages"]

    other = await connect("forked1")
    provider.script(text("in the fork"))
    await other.turn("go on")
    request = sent(provider)
    assert "remember the milk" in request and "ANSWER-A" in request and "ANSWER-B" not in request
    await other.communicator.disconnect()
    original = await get(async_client)
    assert [entry["content"] for entry in original["messages"]][-1] == "ANSWER-B"  # the original unchanged


async def test_a_fork_at_a_user_message_holds_it_without_its_answer(ws, provider, async_client):
    provider.script(text("one"), text("two"))
    await ws.turn("hello")
    await ws.turn("question two")
    question = user_ids(await get(async_client))[1]
    fork = (await post(async_client, "/conversations/conv1/fork", {"message_id": question})).json()
    assert [entry["content"] for entry in fork["messages"]] == ["hello", "one", "question two"]
    other = await connect(fork["id"])
    provider.script(text("ok"))
    await other.turn("still there?")
    request = sent(provider)
    assert "question two" in request and 'two"' not in request.replace("question two", "")
    await other.communicator.disconnect()


async def tree_state() -> tuple[list[Any], list[Any], Any, int]:
    def read() -> tuple[list[Any], list[Any], Any, int]:
        return (
            list(Turn.objects.order_by("created_at").values_list("id", "parent_id", "prompt_id", "status")),
            list(Message.objects.order_by("id").values_list("id", "content")),
            list(Conversation.objects.values_list("id", "active_leaf_id", "title").order_by("id")),
            SessionItem.objects.count() + 1000 * UsageRecord.objects.count(),
        )

    return await sync_to_async(read)()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "regenerate", "message_id": "00000000-0000-0000-0000-000000000000"}, "unknown_message"),
        ({"type": "regenerate", "message_id": "not a uuid"}, "unknown_message"),
        ({"type": "regenerate", "message_id": "USER"}, "not_a_reply"),
        ({"type": "edit", "message_id": "TURN", "message": "x"}, "not_a_user_message"),
        ({"type": "edit", "message_id": "00000000-0000-0000-0000-000000000000", "message": "x"}, "unknown_message"),
        ({"type": "edit", "message_id": "USER", "message": "   "}, "empty_message"),
        ({"type": "edit", "message_id": "USER", "message": "x" * 100_001}, "message_too_large"),
        ({"type": "edit", "message_id": "USER"}, "invalid_message"),
        ({"type": "regenerate"}, "invalid_message"),
        ({"type": "regenerate", "message_id": 5}, "invalid_message"),
    ],
)
async def test_bad_branch_frames_are_a_lone_error_and_change_nothing(ws, provider, async_client, frame, code, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 100_000
    provider.script(text("one"))
    turn = (await ws.turn("hello"))[-1]["message_id"]
    user = user_ids(await get(async_client))[0]
    frame = {key: {"USER": user, "TURN": turn}.get(value, value) for key, value in frame.items()}  # type: ignore[arg-type]
    before = await tree_state()
    await ws.send(frame)
    error = await ws.receive()
    assert error["type"] == "error" and error["code"] == code and "message_id" not in error
    assert await tree_state() == before
    assert len(provider.requests) == 1


async def test_bad_branch_requests_over_rest(ws, provider, async_client):
    provider.script(text("one"))
    await ws.turn("hello")
    before = await tree_state()
    for path in ("/conversations/conv1/branch", "/conversations/conv1/fork"):
        response = await post(async_client, path, {"message_id": "00000000-0000-0000-0000-000000000000"})
        assert response.status_code == 404 and response.json()["code"] == "unknown_message"
        response = await post(async_client, path, {})
        assert response.status_code == 400
        response = await post(async_client, path.replace("conv1", "nosuch"), {"message_id": "x"})
        assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert (await async_client.get("/conversations/nosuch/tree")).status_code == 404
    turn = (await tree_state())[0][0][0]
    taken = await post(async_client, "/conversations/conv1/fork", {"message_id": str(turn), "session_id": "conv1"})
    assert taken.status_code == 409 and taken.json()["code"] == "conversation_exists"
    bad = await post(async_client, "/conversations/conv1/fork", {"message_id": str(turn), "session_id": "a b"})
    assert bad.status_code == 400
    assert await tree_state() == before


async def test_branching_during_a_running_turn_is_busy(ws, provider, async_client):
    provider.script(text("one"), text("slow", "er", interval=0.5))
    first = (await ws.turn("hello"))[-1]["message_id"]
    user = user_ids(await get(async_client))[0]
    await ws.send({"message": "second"})
    assert (await ws.receive())["type"] == "stream"
    before = await tree_state()
    for frame in (
        {"type": "regenerate", "message_id": first},
        {"type": "edit", "message_id": user, "message": "other"},
    ):
        await ws.send(frame)
        error = await ws.receive()
        assert error["type"] == "error" and error["code"] == "busy"
    response = await post(async_client, "/conversations/conv1/branch", {"message_id": first})
    assert response.status_code == 409 and response.json()["code"] == "busy"
    assert await tree_state() == before
    await ws.until_end()


async def test_every_v2_socket_is_sent_a_regenerated_turn(provider, async_client):
    first_socket, second_socket = await connect("fan1", protocol=2), await connect("fan1", protocol=2)
    provider.script(text("one"), text("two"))
    turn = (await first_socket.turn("hello"))[-1]["message_id"]
    await second_socket.until_end()
    await first_socket.send({"type": "regenerate", "message_id": turn})
    mine, theirs = await first_socket.until_end(), await second_socket.until_end()
    assert mine == theirs and mine[0]["content"] == "two" and mine[-1]["message_id"] != turn
    for socket in (first_socket, second_socket):
        await socket.communicator.disconnect()


async def test_a_regenerated_turn_is_resumed_on_another_socket_with_no_gap(provider, async_client):
    first_socket = await connect("res1", protocol=2)
    provider.script(text("one"), text(*[f"w{i} " for i in range(12)], interval=0.05))
    turn = (await first_socket.turn("hello"))[-1]["message_id"]
    await first_socket.send({"type": "regenerate", "message_id": turn})
    seen = [await first_socket.receive() for _ in range(3)]
    await first_socket.communicator.disconnect()  # a reload mid-reply
    # Resuming from the URL: a socket that said nothing yet would be the client's one v1 socket,
    # sent the turn's frames before any `hello` or `resume` it sends (PROTOCOL.md).
    second_socket = await connect(f"res1?after_seq={seen[-1]['seq']}")
    rest = [event for event in await second_socket.until_end() if event["type"] != "resume_end"]
    events = seen + rest
    assert [event["seq"] for event in events] == list(range(1, len(events) + 1))
    assert {event["message_id"] for event in events} == {seen[0]["message_id"]} != {turn}
    shown = "".join(event.get("content", "") for event in events if event["type"] in ("stream", "final_stream"))
    body = await get(async_client, "res1")
    assert [(e["content"], e.get("branch")) for e in body["messages"]] == [
        ("hello", None),
        (shown, {"index": 2, "count": 2}),
    ]
    await second_socket.communicator.disconnect()


async def test_cancelling_a_regenerated_turn_keeps_the_old_answer_as_a_sibling(ws, provider, async_client):
    provider.script(text("one"), text("a", "b", "c", "d", interval=0.3))
    first = (await ws.turn("hello"))[-1]["message_id"]
    await ws.send({"type": "regenerate", "message_id": first})
    assert (await ws.receive())["content"] == "a"
    await ws.send({"type": "cancel"})
    end = (await ws.until_end())[-1]
    assert end["finish_reason"] == "cancelled"
    body = await get(async_client)
    assert [(e["content"], e.get("branch")) for e in body["messages"]] == [
        ("hello", None),
        ("a", {"index": 2, "count": 2}),
    ]
    provider.script(text("three"))
    await answer(ws, {"type": "regenerate", "message_id": end["message_id"]})
    assert (await get(async_client))["messages"][1]["branch"] == {"index": 3, "count": 3}


async def test_another_users_message_is_unknown(provider, async_client, django_user_model):
    from accounts.tokens import token_create
    from tests.accounts.sockets import open_socket

    alice = await django_user_model.objects.acreate(username="alice")
    bob = await django_user_model.objects.acreate(username="bob")
    (_, alice_raw), (_, bob_raw) = [await sync_to_async(token_create)(user=user) for user in (alice, bob)]
    with override_settings(AUTH_MODE="django"):
        _, _, alice_socket = await open_socket("/ws/alice1", subprotocols=["bearer", alice_raw])
        await alice_socket.receive_json_from()
        provider.script(text("hers"))
        await alice_socket.send_json_to({"message": "secret"})
        while (event := await alice_socket.receive_json_from(timeout=10))["type"] != "stream_end":
            pass
        hers = event["message_id"]
        _, _, bob_socket = await open_socket("/ws/bob1", subprotocols=["bearer", bob_raw])
        await bob_socket.receive_json_from()
        before = await tree_state()
        await bob_socket.send_json_to({"type": "regenerate", "message_id": hers})
        assert (await bob_socket.receive_json_from())["code"] == "unknown_message"
        as_bob = {"headers": {"Authorization": f"Bearer {bob_raw}"}}
        response = await async_client.post(
            "/conversations/bob1/branch", {"message_id": hers}, content_type="application/json", **as_bob
        )
        assert response.status_code == 404 and response.json()["code"] == "unknown_message"
        for path in ("/conversations/alice1/branch", "/conversations/alice1/fork"):
            response = await async_client.post(path, {"message_id": hers}, content_type="application/json", **as_bob)
            assert response.status_code == 404 and response.json()["code"] == "not_found"
        assert (await async_client.get("/conversations/alice1/tree", **as_bob)).status_code == 404
        assert await tree_state() == before
        assert len(provider.requests) == 1
        for socket in (alice_socket, bob_socket):
            await socket.disconnect()


async def test_deleting_a_branched_conversation_deletes_every_branch_and_keeps_the_ledger(ws, provider, async_client):
    provider.script(text("one"), text("two"), text("three"))
    first = (await ws.turn("hello"))[-1]["message_id"]
    await answer(ws, {"type": "regenerate", "message_id": first})
    hello = user_ids(await get(async_client))[0]
    await answer(ws, {"type": "edit", "message_id": hello, "message": "edited"})
    assert (await async_client.delete("/conversations/conv1")).status_code == 200
    assert await Turn.objects.acount() == 0 and await Message.objects.acount() == 0
    assert await UsageRecord.objects.filter(turn__isnull=True).acount() == 3
    assert (await async_client.get("/conversations/conv1/tree")).status_code == 404
