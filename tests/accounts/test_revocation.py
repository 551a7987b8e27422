"""A revoked identity (its token deleted, its user deactivated) loses its open sockets: a lone
`unauthorized` error and close 4401, in every worker (the channel layer), and a chat frame
re-checks the identity in case that message was lost."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from accounts import revocation
from accounts.models import ApiToken
from accounts.tokens import token_create
from tests.accounts.sockets import open_socket
from tests.fake_provider import text

pytestmark = pytest.mark.django_db(transaction=True)
WORDS = [f"w{n} " for n in range(200)]


@pytest.fixture(autouse=True)
def django_mode():
    with override_settings(AUTH_MODE="django"):
        yield


async def connected(path: str, raw: str):
    accepted, _sub, socket = await open_socket(path, subprotocols=["bearer", raw])
    assert accepted
    assert (await socket.receive_json_from())["type"] == "connected"
    return socket


async def assert_revoked(socket) -> list[dict]:
    """The frames up to the close: a lone `unauthorized` error among them, then close 4401."""
    frames = []
    while (output := await socket.receive_output(timeout=5))["type"] == "websocket.send":
        frames.append(json.loads(output["text"]))
    assert output == {"type": "websocket.close", "code": 4401}
    errors = [frame for frame in frames if frame["type"] == "error" and "seq" not in frame]
    assert [error["code"] for error in errors] == ["unauthorized"] and "revoked" in errors[0]["error"]
    return frames


async def test_deleting_a_token_closes_its_sockets_only(django_user_model):
    alice = await django_user_model.objects.acreate(username="alice")
    token, raw = await sync_to_async(token_create)(user=alice)
    _, other_raw = await sync_to_async(token_create)(user=alice)
    first, second = await connected("/ws/rv1", raw), await connected("/ws/rv2", raw)
    other = await connected("/ws/rv3", other_raw)
    await ApiToken.objects.filter(pk=token.pk).adelete()
    await assert_revoked(first)
    await assert_revoked(second)
    await first.disconnect()
    await second.disconnect()
    await other.send_json_to({"type": "ping"})
    assert (await other.receive_json_from())["type"] == "pong"  # her other token still works
    await other.disconnect()


async def test_deactivating_a_user_closes_her_sockets_and_stops_her_reply(django_user_model, provider):
    alice = await django_user_model.objects.acreate(username="alice")
    _, raw = await sync_to_async(token_create)(user=alice)
    socket = await connected("/ws/rv4", raw)
    provider.script(text(*WORDS, interval=0.05))
    await socket.send_json_to({"message": "long"})
    assert (await socket.receive_json_from(timeout=10))["type"] == "stream"
    alice.is_active = False
    await alice.asave()
    await assert_revoked(socket)
    await socket.disconnect()
    await asyncio.sleep(0.3)
    assert provider.requests[-1].closed_early_at is not None  # her reply was cancelled: the stream cut


async def test_a_lost_revocation_is_caught_by_the_next_chat_frame(django_user_model, provider, monkeypatch):
    monkeypatch.setattr(revocation, "_announce", lambda group, *, user: None)  # the message is lost
    alice = await django_user_model.objects.acreate(username="alice")
    token, raw = await sync_to_async(token_create)(user=alice)
    socket = await connected("/ws/rv5", raw)
    await ApiToken.objects.filter(pk=token.pk).adelete()
    await socket.send_json_to({"message": "still me?"})
    await assert_revoked(socket)
    await socket.disconnect()
    assert provider.requests == []
