"""Branches of an imported conversation (issues 30 and 33): a `regenerate` or an `edit` sends the
model exactly the active path, as it does in the conversation the file came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from tests.conftest import Client, connect
from tests.fake_provider import FakeProvider, text, tools

pytestmark = pytest.mark.django_db(transaction=True)
SAMPLES = Path(__file__).with_name("samples")


def said(provider: FakeProvider) -> list[tuple[str, Any]]:
    """The last request's messages, the system prompt left out; a tool call by its name."""
    messages = provider.requests[-1].body["messages"]
    return [
        (message["role"], message.get("content") or [call["function"]["name"] for call in message["tool_calls"]])
        for message in messages
        if message["role"] != "system"
    ]


async def ids(client: Any, conversation_id: str) -> tuple[list[str], list[str]]:
    """The user entries' ids and the answers' message_ids on the active path, in order."""
    body = (await sync_to_async(client.get)(f"/conversations/{conversation_id}")).json()
    users = [entry["id"] for entry in body["messages"] if entry["role"] == "user"]
    answers = list(dict.fromkeys(entry["message_id"] for entry in body["messages"] if "message_id" in entry))
    return users, answers


async def imported(client: Any, body: bytes) -> str:
    response = await sync_to_async(client.post)("/conversations/import", body, content_type="application/json")
    assert response.status_code == 201, response.json()
    return response.json()["imported"][0]


async def branch(socket: Client, frame: dict[str, Any]) -> None:
    await socket.send(frame)
    await socket.until_end()


async def test_our_export_of_a_branched_conversation_replays_the_active_path(client, ws, provider, workspace):
    (workspace / "notes.txt").write_text("hello")
    provider.script(
        tools(("read_file", {"path": "notes.txt"})), text("It says hello."), text("OLD-2"), text("NEW-2"), text("A3")
    )
    await ws.turn("What do my notes say?")
    await ws.turn("Second question")
    _, answers = await ids(client, "conv1")
    await branch(ws, {"type": "regenerate", "message_id": answers[1]})  # the original branches: OLD-2 aside
    await ws.turn("Third question")
    copy = await imported(client, (await sync_to_async(client.get)("/conversations/conv1/export")).content)
    socket = await connect(copy)

    for conversation_id, each in ((copy, socket), ("conv1", ws)):
        users, answers = await ids(client, conversation_id)
        provider.script(text("A3 again"))
        await branch(each, {"type": "regenerate", "message_id": answers[2]})
        assert said(provider) == [
            ("user", "What do my notes say?"),
            ("assistant", ["read_file"]),
            ("tool", "hello"),
            ("assistant", "It says hello."),
            ("user", "Second question"),
            ("assistant", "NEW-2"),
            ("user", "Third question"),
        ], conversation_id
        provider.script(text("edited"))
        await branch(each, {"type": "edit", "message_id": users[1], "message": "Second, edited"})
        assert said(provider) == [
            ("user", "What do my notes say?"),
            ("assistant", ["read_file"]),
            ("tool", "hello"),
            ("assistant", "It says hello."),
            ("user", "Second, edited"),
        ], conversation_id
    await socket.communicator.disconnect()


async def test_a_chatgpt_import_replays_the_active_path(client, provider):
    copy = await imported(client, (SAMPLES / "chatgpt_conversations.json").read_bytes())
    socket = await connect(copy)
    users, answers = await ids(client, copy)
    provider.script(text("75%, again"), text("Only this"))
    await branch(socket, {"type": "regenerate", "message_id": answers[1]})
    assert said(provider) == [
        ("user", "My sourdough starter smells like acetone. Is it dead?"),
        ("assistant", "Not dead: it is hungry. Feed it twice a day for a few days."),
        ("user", "What hydration is 500 g flour and 375 g water?"),
    ]
    await branch(socket, {"type": "edit", "message_id": users[0], "message": "Is my starter dead?"})
    assert said(provider) == [("user", "Is my starter dead?")]
    await socket.communicator.disconnect()


def document(turns: list[tuple[str, str, list[str]]], replay: list[dict[str, Any]], **extra: Any) -> bytes:
    """An export of ours: turns as (id, status, [user message, answers...]), `replay` as saved."""
    messages = [
        {"id": f"{turn_id}-{index}", "turn_id": turn_id, "role": "assistant" if index else "user", "content": said}
        for turn_id, _, texts in turns
        for index, said in enumerate(texts)
    ]
    conversation = {
        "title": "Imported",
        "turns": [{"id": turn_id, "status": status} for turn_id, status, _ in turns],
        "messages": messages,
        "replay": replay,
        **extra,
    }
    return json.dumps({"format": "dreamytin.conversations", "version": 1, "conversations": [conversation]}).encode()


def asked(said: str) -> dict[str, Any]:
    return {"role": "user", "content": said}


def answered(said: str) -> dict[str, Any]:
    return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": said}]}


async def test_an_older_export_gives_a_turn_that_left_no_replay_item_none_of_the_next_ones(client, provider):
    # Turn t1 was recovered from an empty log (its worker died before its first flush): it left
    # no replay item, and t2 sent the same text again. The file has no replay_turn_ids.
    turns = [("t1", "interrupted", ["continue"]), ("t2", "complete", ["continue", "x"])]
    turns.append(("t3", "complete", ["next", "y"]))
    copy = await imported(client, document(turns, [asked("continue"), answered("x"), asked("next"), answered("y")]))
    socket = await connect(copy)
    _, answers = await ids(client, copy)
    provider.script(text("x again"))
    await branch(socket, {"type": "regenerate", "message_id": answers[1]})  # t2's answer: t1 replays nothing
    assert said(provider) == [("user", "continue")]
    await socket.communicator.disconnect()


async def test_our_export_names_each_replay_items_turn(client, provider):
    # t1 failed before the model answered (its user item only), t0 was recovered from an empty
    # log: from the texts alone, t1's item would go to t0; the file says t1.
    turns = [("t0", "interrupted", ["again"]), ("t1", "error", ["again"]), ("t2", "complete", ["next", "y"])]
    replay = [asked("again"), asked("next"), answered("y")]
    copy = await imported(client, document(turns, replay, replay_turn_ids=["t1", "t2", "t2"]))
    socket = await connect(copy)
    users, _ = await ids(client, copy)
    provider.script(text("edited"))
    await branch(socket, {"type": "edit", "message_id": users[1], "message": "t1, edited"})  # after t0: nothing
    assert said(provider) == [("user", "t1, edited")]
    await socket.communicator.disconnect()


async def test_replay_turn_ids_that_do_not_fit_the_file_refuse_it(client, provider):
    turns = [("t1", "complete", ["hi", "hello"])]
    for ids_, why in ((["t1"], "1 ids for 2 replay items"), (["t1", "t9"], "names turn 't9'")):
        body = document(turns, [asked("hi"), answered("hello")], replay_turn_ids=ids_)
        response = await sync_to_async(client.post)("/conversations/import", body, content_type="application/json")
        assert response.status_code == 400 and why in response.json()["detail"], response.json()
