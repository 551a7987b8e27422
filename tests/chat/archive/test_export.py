"""`GET /conversations/<id>/export` (JSON with everything, or Markdown) and `GET
/conversations/export` (all of the caller's)."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from tests.conftest import connect
from tests.fake_provider import error, text, tools

pytestmark = pytest.mark.django_db(transaction=True)


async def get(client, path: str, **params):
    return await sync_to_async(client.get)(path, params)


async def test_the_json_holds_turns_messages_tools_usage_and_replay(client, ws, provider, workspace):
    (workspace / "plan.md").write_text("x")
    provider.script(tools(("ls", {}), usage=(30, 5, 0)), text("You have plan.md.", usage=(40, 6, 0)))
    await ws.turn("What files do I have?")
    response = await get(client, "/conversations/conv1/export")
    assert response.status_code == 200 and "attachment" in response["Content-Disposition"]
    document = response.json()
    assert document["format"] == "dreamytin.conversations" and document["version"] == 1
    (conversation,) = document["conversations"]
    assert conversation["id"] == "conv1" and conversation["title"] == "What files do I have?"
    user, tool, answer = conversation["messages"]
    # Each message names the one before it: the shape a tree of branches needs.
    assert user["parent_id"] is None and tool["parent_id"] == user["id"] and answer["parent_id"] == tool["id"]
    assert user["role"] == "user" and answer["content"] == "You have plan.md."
    assert tool["tool"]["name"] == "ls" and tool["tool"]["arguments"] == {} and "plan.md" in tool["tool"]["result"]
    assert tool["tool"]["ok"] is True and tool["tool"]["call_id"]
    (turn,) = conversation["turns"]
    assert turn["status"] == "complete" and [row["input_tokens"] for row in turn["usage"]] == [30, 40]
    assert all(row["kind"] == "turn" for row in turn["usage"])
    assert conversation["usage_totals"]["requests"] == 2 and conversation["usage_totals"]["total_tokens"] == 81
    assert [item.get("type", "message") for item in conversation["replay"]][:2] == ["message", "function_call"]
    assert conversation["replay_turn_ids"] == [turn["id"]] * len(conversation["replay"])  # each item's turn


async def test_markdown_to_read(client, ws, provider, workspace):
    provider.script(tools(("ls", {})), text("Nothing **much** here."))
    await ws.turn("Look around")
    provider.script(error(400, "bad request"))
    await ws.turn("And again")
    response = await get(client, "/conversations/conv1/export", format="markdown")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/markdown")
    body = response.content.decode()
    assert body.startswith("# Look around\n")
    assert "**You:**\n\nLook around" in body and "**Assistant:**\n\nNothing **much** here." in body
    assert "<summary>🔧 ls</summary>" in body
    assert "> **Error:**" in body and body.index("And again") < body.index("> **Error:**")
    assert 'filename="Look-around.md"' in response["Content-Disposition"]


async def test_export_all_and_bad_requests(client, provider):
    for conversation_id in ("first", "second"):
        socket = await connect(conversation_id)
        provider.script(text(f"reply in {conversation_id}"))
        await socket.turn(f"hello {conversation_id}")
        await socket.communicator.disconnect()
    document = (await get(client, "/conversations/export")).json()
    assert [conversation["id"] for conversation in document["conversations"]] == ["first", "second"]
    assert (await get(client, "/conversations/first/export", format="pdf")).status_code == 400
    missing = await get(client, "/conversations/nobody/export")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert (await get(client, "/conversations/bad id!/export")).status_code in (400, 404)


async def test_a_branched_conversation_exports_its_active_path_and_its_whole_cost(client, ws, provider):
    provider.script(text("FIRST", usage=(10, 1, 0)), text("SECOND", usage=(20, 2, 0)))
    first = (await ws.turn("hello"))[-1]["message_id"]
    await ws.send({"type": "regenerate", "message_id": first})
    second = (await ws.until_end())[-1]["message_id"]
    (conversation,) = (await get(client, "/conversations/conv1/export")).json()["conversations"]
    assert [turn["id"] for turn in conversation["turns"]] == [second]
    assert [message["content"] for message in conversation["messages"]] == ["hello", "SECOND"]
    assert "FIRST" not in str(conversation["replay"]) and "SECOND" in str(conversation["replay"])
    assert conversation["usage_totals"]["input_tokens"] == 30  # every branch's requests
    assert [row["input_tokens"] for row in conversation["usage"]] == [10]  # the other branch's
