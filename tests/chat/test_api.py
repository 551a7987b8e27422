"""`/conversations` and `/usage` over REST, as the frontend's sidebar uses them."""

from __future__ import annotations

import pytest

from chat.models import Message, SessionItem, UsageRecord
from tests.chat.frontend import as_shown
from tests.conftest import connect
from tests.fake_provider import error, text, tools

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
    ],
)
def test_bad_create_requests_are_400_with_a_readable_detail(client, provider, payload, detail):
    response = client.post("/conversations", payload, content_type="application/json")
    assert response.status_code == 400
    assert detail in response.json()["detail"]


@pytest.mark.parametrize("model", ["claude-3.5-haiku", "", None])
def test_create_never_refuses_over_the_model_it_falls_back_to_the_default(client, provider, model):
    """On first load the frontend creates a conversation with its built-in default model,
    which the catalog may lack: the conversation is made, on the catalog's usable default."""
    response = client.post("/conversations", {"session_id": "first1", "model": model}, content_type="application/json")
    assert response.status_code == 201
    assert response.json()["model"] == "gpt-4o"


def test_create_keeps_a_usable_model_that_is_not_the_default(client, provider):
    body = {"session_id": "chosen1", "model": "claude-sonnet-4-5"}
    response = client.post("/conversations", body, content_type="application/json")
    assert response.status_code == 201 and response.json()["model"] == "claude-sonnet-4-5"


def test_create_with_a_model_whose_provider_has_no_key_falls_back(client, provider, settings):
    settings.ANTHROPIC_API_KEY = None
    body = {"session_id": "nokey1", "model": "claude-sonnet-4-5"}
    response = client.post("/conversations", body, content_type="application/json")
    assert response.status_code == 201 and response.json()["model"] == "gpt-4o"


def test_an_untitled_conversation_is_listed_as_new_until_its_first_message(client, provider):
    client.post("/conversations", {"session_id": "fresh1"}, content_type="application/json")
    assert client.get("/conversations").json()["conversations"][0]["title"] == "New conversation"
    assert client.get("/conversations/fresh1").json()["title"] == "New conversation"


async def test_the_first_message_titles_a_conversation_made_by_post(async_client, provider):
    await async_client.post("/conversations", {"session_id": "fresh2"}, content_type="application/json")
    await chat("fresh2", provider, text("hi"), message="Plan a trip to Lisbon")
    listed = (await async_client.get("/conversations")).json()["conversations"]
    assert listed[0]["title"] == "Plan a trip to Lisbon"


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


async def test_a_failed_turns_error_entry_is_counted_like_the_others(async_client, provider):
    await chat("failed", provider, tools(("ls", {}), text=["Looking."]), error(500))
    listed = (await async_client.get("/conversations")).json()["conversations"]
    shown = (await async_client.get("/conversations/failed")).json()["messages"]
    assert [m["role"] for m in shown] == ["user", "assistant", "tool", "assistant"]
    assert listed[0]["message_count"] == len(shown)
    assert set(listed[0]) == {"id", "title", "created_at", "updated_at", "message_count", "model"}


async def test_detail_is_what_the_frontend_showed(async_client, provider, workspace):
    (workspace / "a.txt").write_text("alpha")
    await chat("conv9", provider, tools(("read_file", {"path": "a.txt"}), text=["Reading."]), text("It says alpha."))
    body = (await async_client.get("/conversations/conv9")).json()
    assert as_shown(body["messages"]) == [
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
