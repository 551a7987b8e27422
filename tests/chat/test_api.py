"""`/conversations` and `/usage` over REST, as the frontend's sidebar uses them."""

from __future__ import annotations

import pytest

from chat.models import Message, SessionItem, UsageRecord
from tests.conftest import connect
from tests.fake_provider import text, tools

pytestmark = pytest.mark.django_db(transaction=True)


def test_create_a_conversation(client, provider):
    response = client.post(
        "/conversations", {"session_id": "abc123xyz", "model": "gpt-4o"}, content_type="application/json"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["id"] == "abc123xyz" and body["model"] == "gpt-4o" and body["messages"] == []
    assert body["created_at"].endswith("+00:00") and body["updated_at"]
    again = client.post("/conversations", {"session_id": "abc123xyz"}, content_type="application/json")
    assert again.status_code == 200 and again.json()["id"] == "abc123xyz"


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        ({"model": "gpt-4o"}, "session_id: Field required"),
        ({"session_id": "bad id!"}, "Conversation ids are 1-64 characters"),
        ({"session_id": "x" * 65}, "Conversation ids are 1-64 characters"),
        ({"session_id": 12}, "session_id"),
        ({"session_id": "ok", "model": "gpt-99"}, "Unknown model 'gpt-99'"),
    ],
)
def test_bad_create_requests_are_400_with_a_readable_detail(client, provider, payload, detail):
    response = client.post("/conversations", payload, content_type="application/json")
    assert response.status_code == 400
    assert detail in response.json()["detail"]


def test_malformed_json_body(client, provider):
    response = client.post("/conversations", "{oops", content_type="application/json")
    assert response.status_code == 400 and isinstance(response.json()["detail"], str)


def test_unknown_conversation_is_404(client):
    assert client.get("/conversations/nope").status_code == 404
    assert client.get("/conversations/nope").json()["detail"] == "Conversation nope not found"
    assert client.delete("/conversations/nope").status_code == 404
    assert client.get("/conversations/bad!id").status_code == 400


async def chat(conversation_id: str, provider, *replies, message: str = "hello") -> list[dict]:
    provider.script(*replies)
    socket = await connect(conversation_id)
    events = await socket.turn(message)
    await socket.communicator.disconnect()
    return events


async def test_list_newest_first_with_titles_and_counts(async_client, provider):
    await chat("older", provider, text("one"), message="First question about Django channels")
    await chat("newer", provider, tools(("ls", {})), text("two"), message="Second")
    body = (await async_client.get("/conversations")).json()
    listed = body["conversations"]
    assert [c["id"] for c in listed] == ["newer", "older"]
    assert listed[1]["title"] == "First question about Django channels"
    assert listed[0]["message_count"] == 3  # user, tool, assistant
    assert listed[1]["message_count"] == 2
    assert set(listed[0]) == {"id", "title", "created_at", "updated_at", "message_count", "model"}


async def test_detail_is_what_the_frontend_showed(async_client, provider, workspace):
    (workspace / "a.txt").write_text("alpha")
    await chat("conv9", provider, tools(("read_file", {"path": "a.txt"}), text=["Reading."]), text("It says alpha."))
    body = (await async_client.get("/conversations/conv9")).json()
    assert body["messages"] == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "Reading."},
        {"role": "tool", "content": "🔧 read_file", "toolName": "read_file", "toolResult": "alpha"},
        {"role": "assistant", "content": "It says alpha."},
    ]
    assert body["title"] == "hello" and body["model"] == "gpt-4o"
    assert body["usage"]["requests"] == 2 and body["usage"]["total_tokens"] == 38


async def test_delete_removes_history_but_keeps_the_ledger(async_client, provider):
    await chat("gone", provider, tools(("ls", {})), text("done"))
    assert await UsageRecord.objects.filter(conversation_id="gone").acount() == 2
    response = await async_client.delete("/conversations/gone")
    assert response.status_code == 200 and response.json()["message"]
    assert (await async_client.get("/conversations/gone")).status_code == 404
    assert await Message.objects.acount() == 0 and await SessionItem.objects.acount() == 0
    assert await UsageRecord.objects.filter(conversation__isnull=True).acount() == 2
    totals = (await async_client.get("/usage")).json()
    assert totals["requests"] == 2


async def test_usage_totals_grouped_and_filtered(async_client, provider):
    await chat("u1", provider, text("a"))
    provider.script(text("b"))
    socket = await connect("u2")
    await socket.turn("hi", model="gpt-4o-mini")
    await socket.communicator.disconnect()
    report = (await async_client.get("/usage")).json()
    assert report["requests"] == 2 and report["input_tokens"] == 24 and report["output_tokens"] == 14
    assert report["total_tokens"] == 38
    assert report["cost_usd"] == pytest.approx(12 * 2.5e-6 + 7 * 10e-6 + 12 * 0.15e-6 + 7 * 0.6e-6)
    assert [row["model"] for row in report["by_model"]] == ["gpt-4o", "gpt-4o-mini"]
    assert len(report["by_day"]) == 1 and report["by_day"][0]["requests"] == 2
    only = (await async_client.get("/usage", {"conversation_id": "u2"})).json()
    assert only["requests"] == 1 and only["by_model"][0]["model"] == "gpt-4o-mini"
    day = report["by_day"][0]["day"]
    assert (await async_client.get("/usage", {"from": day, "to": day})).json()["requests"] == 2
    assert (await async_client.get("/usage", {"to": "2000-01-01"})).json()["requests"] == 0
    assert (await async_client.get("/usage", {"from": "yesterday"})).status_code == 400


@pytest.mark.parametrize("conversation_id", ["a%00b", "a%20b", "x" * 65, "%ED%A0%80", "%FF"])
def test_usage_of_a_malformed_conversation_id_is_400(client, conversation_id):
    response = client.get(f"/usage?conversation_id={conversation_id}")
    assert response.status_code == 400
    assert "Conversation ids are" in response.json()["detail"]
