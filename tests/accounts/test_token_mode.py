"""AUTH_MODE=token: one shared secret, as a Bearer header or as the subprotocols `bearer, <token>`."""

from __future__ import annotations

import logging

import pytest
from django.test import override_settings

from accounts.identity import shared_token_valid
from tests.accounts.sockets import open_socket

pytestmark = pytest.mark.django_db(transaction=True)
TOKEN = "t0ken-for-tests-0123456789abcdefghijKLMN"


@pytest.fixture(autouse=True)
def token_mode():
    with override_settings(AUTH_MODE="token", AUTH_TOKEN=TOKEN):
        yield


def test_rest_needs_the_bearer_token(client):
    refused = client.get("/conversations")
    assert refused.status_code == 401
    assert refused.json()["code"] == "unauthorized" and refused["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/conversations", HTTP_AUTHORIZATION=f"Bearer {TOKEN}x").status_code == 401
    assert client.get("/conversations", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    assert client.get("/conversations", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    assert client.get("/conversations", HTTP_AUTHORIZATION=f"bearer {TOKEN}").status_code == 200


def test_any_address_with_the_token_is_served(client):
    response = client.get("/models", REMOTE_ADDR="203.0.113.5", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200


def test_health_is_open_and_docs_follow_the_mode(client):
    assert client.get("/health").status_code == 200
    assert client.get("/docs").status_code == 401
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/openapi.json", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


async def test_a_socket_with_the_token_as_subprotocol_is_answered_with_bearer(caplog):
    with caplog.at_level(logging.DEBUG):
        accepted, subprotocol, socket = await open_socket(address="203.0.113.5", subprotocols=["bearer", TOKEN])
        assert accepted is True and subprotocol == "bearer"
        assert (await socket.receive_json_from())["type"] == "connected"
        await socket.send_json_to({"type": "ping"})
        assert (await socket.receive_json_from())["type"] == "pong"
        await socket.disconnect()
        refused, _code, _ = await open_socket(address="203.0.113.5", subprotocols=["bearer", TOKEN + "x"])
    assert refused is False
    assert all(TOKEN not in record.getMessage() for record in caplog.records)


async def test_a_socket_with_the_token_in_a_header_or_none():
    accepted, subprotocol, socket = await open_socket(headers=[(b"authorization", f"Bearer {TOKEN}".encode())])
    assert accepted is True and subprotocol is None
    await socket.disconnect()
    for subprotocols in ([], ["bearer"], [TOKEN], ["chat", TOKEN]):
        refused, _code, _ = await open_socket(subprotocols=subprotocols)
        assert refused is False, subprotocols


async def test_the_token_is_not_accepted_in_the_url():
    accepted, _code, _ = await open_socket(f"/ws/acct2?token={TOKEN}")
    assert accepted is False


def test_the_comparison_refuses_every_near_miss():
    assert shared_token_valid(TOKEN)
    for wrong in (None, "", TOKEN[:-1], TOKEN + "a", "\ud800", "é" * 40):
        assert not shared_token_valid(wrong)
