"""AUTH_MODE=django: users by session or personal token; each sees only their own conversations."""

from __future__ import annotations

import io

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.test import override_settings

from accounts.models import ApiToken
from accounts.tokens import token_create, token_digest
from chat.models import Conversation, UsageRecord
from tests.accounts.sockets import open_socket
from tests.fake_provider import text

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def django_mode():
    with override_settings(AUTH_MODE="django"):
        yield


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password="pw-alice-1")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", password="pw-bob-1")


def bearer(raw: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def test_create_token_prints_it_on_its_last_line_and_stores_a_digest(alice):
    out = io.StringIO()
    call_command("create_token", "alice", stdout=out, stderr=io.StringIO())
    raw = out.getvalue().strip().splitlines()[-1]
    token = ApiToken.objects.get(user=alice)
    assert token.digest == token_digest(raw) and raw not in (token.digest, token.prefix)
    assert len(raw) >= 40


def test_rest_by_token_by_session_or_not_at_all(client, alice):
    _, raw = token_create(user=alice)
    assert client.get("/conversations").status_code == 401
    assert client.get("/conversations", **bearer(raw)).status_code == 200
    assert client.get("/conversations", **bearer(raw + "x")).status_code == 401
    client.force_login(alice)
    assert client.get("/conversations").status_code == 200


def test_a_revoked_token_or_an_inactive_user_is_refused(client, alice):
    token, raw = token_create(user=alice)
    token.delete()
    assert client.get("/models", **bearer(raw)).status_code == 401
    _, raw = token_create(user=alice)
    alice.is_active = False
    alice.save()
    assert client.get("/models", **bearer(raw)).status_code == 401


def test_conversations_belong_to_their_user(client, alice, bob, provider):
    _, alice_raw = token_create(user=alice)
    _, bob_raw = token_create(user=bob)
    created = client.post(
        "/conversations", {"session_id": "alice1"}, content_type="application/json", **bearer(alice_raw)
    )
    assert created.status_code == 201
    assert Conversation.objects.get(id="alice1").owner == alice
    listed = client.get("/conversations", **bearer(bob_raw)).json()["conversations"]
    assert listed == []
    # Every route answers bob as if it did not exist.
    assert client.get("/conversations/alice1", **bearer(bob_raw)).status_code == 404
    assert client.delete("/conversations/alice1", **bearer(bob_raw)).status_code == 404
    taken = client.post("/conversations", {"session_id": "alice1"}, content_type="application/json", **bearer(bob_raw))
    assert taken.status_code == 404
    assert Conversation.objects.get(id="alice1").owner == alice
    assert [c["id"] for c in client.get("/conversations", **bearer(alice_raw)).json()["conversations"]] == ["alice1"]
    assert client.delete("/conversations/alice1", **bearer(alice_raw)).status_code == 200


async def test_a_socket_by_token_or_session_and_ownership(client, alice, bob, provider):
    _, alice_raw = await sync_to_async(token_create)(user=alice)
    _, bob_raw = await sync_to_async(token_create)(user=bob)
    refused, _code, _ = await open_socket("/ws/dj1")
    assert refused is False
    accepted, subprotocol, socket = await open_socket("/ws/dj1", subprotocols=["bearer", alice_raw])
    assert accepted and subprotocol == "bearer"
    assert (await socket.receive_json_from())["type"] == "connected"
    provider.script(text("hello"))
    await socket.send_json_to({"message": "hi"})
    while (await socket.receive_json_from(timeout=10))["type"] != "stream_end":
        pass
    await socket.disconnect()
    conversation = await Conversation.objects.select_related("owner").aget(id="dj1")
    assert conversation.owner == alice
    assert await UsageRecord.objects.filter(user=alice).acount() == 1
    # Bob cannot join it, whether by token or by session.
    refused, code, _ = await open_socket("/ws/dj1", subprotocols=["bearer", bob_raw])
    assert refused is False and code == 4404
    await sync_to_async(client.force_login)(bob)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    refused, code, _ = await open_socket("/ws/dj1", headers=[(b"cookie", cookie)])
    assert refused is False and code == 4404
    accepted, _sub, socket = await open_socket("/ws/dj-bob", headers=[(b"cookie", cookie)])
    assert accepted is True
    await socket.disconnect()


async def test_a_socket_on_an_unused_id_makes_it_its_users(client, alice, bob, provider):
    """Bob's socket opened on an id nobody used: it is his now, so alice cannot start a turn
    there for his socket to watch (issue 35: he received, resumed and cancelled her turns)."""
    _, bob_raw = await sync_to_async(token_create)(user=bob)
    _, alice_raw = await sync_to_async(token_create)(user=alice)
    accepted, _sub, bobs = await open_socket("/ws/race1", subprotocols=["bearer", bob_raw])
    assert accepted
    await bobs.receive_json_from()
    assert (await Conversation.objects.aget(id="race1")).owner_id == bob.id
    made = await sync_to_async(client.post)(
        "/conversations", {"session_id": "race1"}, content_type="application/json", **bearer(alice_raw)
    )
    assert made.status_code == 404
    accepted, code, _ = await open_socket("/ws/race1", subprotocols=["bearer", alice_raw])
    assert not accepted and code == 4404
    assert await bobs.receive_nothing(timeout=0.3)
    assert provider.requests == []
    await bobs.disconnect()


async def test_a_deleted_conversations_last_turn_is_never_shown_to_whoever_takes_its_id(client, alice, bob, provider):
    _, bob_raw = await sync_to_async(token_create)(user=bob)
    _, alice_raw = await sync_to_async(token_create)(user=alice)
    accepted, _sub, alices = await open_socket("/ws/gone1", subprotocols=["bearer", alice_raw])
    assert accepted
    await alices.receive_json_from()
    provider.script(text("alice's secret"))
    await alices.send_json_to({"message": "hi"})
    while (await alices.receive_json_from(timeout=10))["type"] != "stream_end":
        pass
    deleted = await sync_to_async(client.delete)("/conversations/gone1", **bearer(alice_raw))
    assert deleted.status_code == 200
    assert (await alices.receive_output(timeout=5))["code"] == 4404  # her socket on it is closed
    accepted, _sub, bobs = await open_socket("/ws/gone1?after_seq=0", subprotocols=["bearer", bob_raw])
    assert accepted
    assert (await bobs.receive_json_from())["type"] == "connected"
    ended = await bobs.receive_json_from(timeout=5)
    assert ended["type"] == "resume_end" and ended["message_id"] is None  # nothing of hers
    await bobs.disconnect()


def test_usage_is_per_user(client, alice, bob):
    _, alice_raw = token_create(user=alice)
    UsageRecord.objects.create(model="gpt-4o", provider="openai", input_tokens=10, output_tokens=5, user=bob)
    assert client.get("/usage", **bearer(alice_raw)).json()["requests"] == 0
    UsageRecord.objects.create(model="gpt-4o", provider="openai", input_tokens=10, output_tokens=5, user=alice)
    assert client.get("/usage", **bearer(alice_raw)).json()["requests"] == 1


def test_staff_see_every_conversation_in_the_admin(client, alice, django_user_model):
    Conversation.objects.create(id="alice-admin", model="gpt-4o", owner=alice)
    admin = django_user_model.objects.create_superuser("root", password="pw-root-1")
    client.force_login(admin)
    page = client.get("/admin/chat/conversation/")
    assert page.status_code == 200 and "alice-admin" in page.content.decode()
