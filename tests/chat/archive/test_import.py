"""`POST /conversations/import`: our export, ChatGPT's conversations.json and Open WebUI's export;
the model is replayed the imported history; bad files are refused and write nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from accounts.tokens import token_create
from chat.models import Conversation, Message, SessionItem, UsageRecord
from tests.chat.frontend import as_shown
from tests.conftest import connect
from tests.fake_provider import text, tools

pytestmark = pytest.mark.django_db(transaction=True)
SAMPLES = Path(__file__).with_name("samples")


def upload(client, body: bytes | str, **headers):
    return client.post("/conversations/import", body, content_type="application/json", **headers)


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def shown(client, conversation_id: str) -> list[dict]:
    return as_shown(client.get(f"/conversations/{conversation_id}").json()["messages"])


def test_a_chatgpt_export_keeps_the_branch_the_user_saw(client, provider):
    response = upload(client, sample("chatgpt_conversations.json"))
    assert response.status_code == 201, response.json()
    first, second = response.json()["imported"]
    conversation = Conversation.objects.get(id=first)
    assert conversation.title == "Sourdough starter help" and conversation.model == "gpt-4o"
    assert conversation.created_at.timestamp() == pytest.approx(1717000000.123, abs=0.01)
    assert shown(client, first) == [
        {"role": "user", "content": "My sourdough starter smells like acetone. Is it dead?"},
        {"role": "assistant", "content": "Not dead: it is hungry. Feed it twice a day for a few days."},
        {"role": "user", "content": "What hydration is 500 g flour and 375 g water?"},
        {"role": "tool", "content": "🔧 python", "toolName": "python", "toolResult": "75.0"},
        {"role": "assistant", "content": "That is 75% hydration: a fairly wet dough."},
    ]
    # An image's part is left out, its text kept; the conversation's own model when usable.
    assert shown(client, second)[0] == {"role": "user", "content": "Which bird is this?"}
    assert Conversation.objects.get(id=second).model == "gpt-4o-mini"
    # Found by search like any other.
    hits = client.get("/conversations", {"q": "acetone"}).json()["conversations"]
    assert [hit["id"] for hit in hits] == [first]


def test_an_open_webui_export_keeps_the_current_branch(client, provider):
    response = upload(client, sample("openwebui_export.json"))
    assert response.status_code == 201
    (imported,) = response.json()["imported"]
    messages = shown(client, imported)
    assert [message["role"] for message in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[1]["content"].startswith("Two mutable references")
    assert "discarded" not in json.dumps(messages)
    conversation = Conversation.objects.get(id=imported)
    assert conversation.title == "Rust borrow checker"
    assert conversation.model == "gpt-4o"  # llama3.1:8b is not in this catalog: the default


async def test_the_model_is_replayed_the_imported_history(client, provider):
    response = await sync_to_async(upload)(client, sample("chatgpt_conversations.json"))
    imported = response.json()["imported"][0]
    socket = await connect(imported)
    provider.script(text("Feed it flour and water."))
    await socket.turn("And how often should I feed it?")
    await socket.communicator.disconnect()
    sent = provider.requests[-1].body["messages"]
    said = [(message["role"], message.get("content")) for message in sent if message["role"] != "system"]
    assert said[0] == ("user", "My sourdough starter smells like acetone. Is it dead?")
    assert ("assistant", "Not dead: it is hungry. Feed it twice a day for a few days.") in said
    assert ("tool", "75.0") in said  # the python call's output, after its call
    assert said[-1] == ("user", "And how often should I feed it?")
    assert "regenerated away" not in json.dumps(sent)


async def test_our_export_imports_as_it_was(client, ws, provider, workspace):
    (workspace / "notes.txt").write_text("hello")
    provider.script(tools(("ls", {})), text("One file: notes.txt."))
    await ws.turn("List my files")
    exported = await sync_to_async(client.get)("/conversations/conv1/export")
    response = await sync_to_async(upload)(client, exported.content)
    assert response.status_code == 201
    (imported,) = response.json()["imported"]
    assert imported != "conv1"
    assert await sync_to_async(shown)(client, imported) == await sync_to_async(shown)(client, "conv1")
    replay = [
        item async for item in SessionItem.objects.filter(conversation_id=imported).values_list("data", flat=True)
    ]
    original = [
        item async for item in SessionItem.objects.filter(conversation_id="conv1").values_list("data", flat=True)
    ]
    assert replay == original
    # The ledger is this server's spending: importing does not add to it.
    assert await UsageRecord.objects.filter(conversation_id=imported).acount() == 0


def test_only_a_json_body_is_taken(client, provider):
    file = SimpleUploadedFile("conversations.json", sample("openwebui_export.json"), content_type="application/json")
    response = client.post("/conversations/import", {"file": file})  # a form: sendable cross-site
    assert response.status_code == 415
    assert Conversation.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "code", "detail"),
    [
        (b"{not json", "invalid_import", "not JSON"),
        (b"\xff\xfe", "invalid_import", "not JSON"),
        (b'{"hello": "world"}', "invalid_import", "matches none of them"),
        (b"[]", "invalid_import", "matches none of them"),
        (b'[{"mapping": {"r": {}}, "current_node": "r"}]', "invalid_import", "no conversation with a message"),
        (b'{"format": "dreamytin.conversations", "version": 2, "conversations": []}', "invalid_import", "version 2"),
        (b'[{"mapping": {}, "current_node": "gone"}]', "invalid_import", "ChatGPT conversation 1"),
        (b'[{"mapping": {"a": {"parent": "a"}}, "current_node": "a"}]', "invalid_import", "cycle"),
        (b'[{"chat": {"history": {"messages": "no"}}}]', "invalid_import", "Open WebUI conversation 1"),
    ],
)
def test_a_malformed_file_is_refused_and_writes_nothing(client, provider, body, code, detail):
    response = upload(client, body)
    assert response.status_code == 400
    assert response.json()["code"] == code and detail in response.json()["detail"]
    assert Conversation.objects.count() == 0


def test_one_bad_conversation_refuses_the_whole_file(client, provider):
    conversations = json.loads(sample("chatgpt_conversations.json"))
    conversations[1]["current_node"] = "missing"
    response = upload(client, json.dumps(conversations))
    assert response.status_code == 400 and "conversation 2" in response.json()["detail"]
    assert Conversation.objects.count() == 0 and Message.objects.count() == 0


def test_an_oversized_file_is_refused(client, provider):
    with override_settings(IMPORT_MAX_BYTES=1000):
        response = upload(client, sample("chatgpt_conversations.json"))
        assert response.status_code == 413
        assert response.json()["code"] == "import_too_large" and "IMPORT_MAX_BYTES" in response.json()["detail"]
    assert Conversation.objects.count() == 0


def test_imports_belong_to_the_caller(client, provider, django_user_model):
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    with override_settings(AUTH_MODE="django"):
        _, alice_raw = token_create(user=alice)
        _, bob_raw = token_create(user=bob)
        response = upload(client, sample("openwebui_export.json"), HTTP_AUTHORIZATION=f"Bearer {alice_raw}")
        (imported,) = response.json()["imported"]
        assert Conversation.objects.get(id=imported).owner == alice
        bob_sees = client.get("/conversations", HTTP_AUTHORIZATION=f"Bearer {bob_raw}").json()["conversations"]
        assert bob_sees == []
        refused = client.get(f"/conversations/{imported}/export", HTTP_AUTHORIZATION=f"Bearer {bob_raw}")
        assert refused.status_code == 404
