"""AUTH_MODE=none (the default): loopback clients only, and no proxy in between."""

from __future__ import annotations

import pytest

from tests.accounts.sockets import open_socket

pytestmark = pytest.mark.django_db(transaction=True)


def test_what_the_test_clients_look_like():
    """The suite's clients are local: Django's test client is 127.0.0.1, and Channels'
    communicator sends no address at all (as a UNIX socket does), which counts as local."""
    from channels.testing import WebsocketCommunicator
    from django.test import RequestFactory

    assert RequestFactory().get("/").META["REMOTE_ADDR"] == "127.0.0.1"
    assert "client" not in WebsocketCommunicator(None, "/ws/x").scope


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_loopback_clients_are_served(client, address):
    assert client.get("/conversations", REMOTE_ADDR=address).status_code == 200


@pytest.mark.parametrize("address", ["192.168.1.20", "10.0.0.1", "203.0.113.5", "::ffff:10.0.0.1", "fe80::1"])
def test_other_addresses_get_403_naming_auth_mode(client, address):
    for path in ("/", "/models", "/conversations", "/docs", "/openapi.json", "/admin/"):
        response = client.get(path, REMOTE_ADDR=address)
        assert response.status_code == 403, path
        assert "AUTH_MODE" in response.json()["detail"] and response.json()["code"] == "unauthorized"


def test_health_stays_open_and_says_nothing_sensitive(client):
    response = client.get("/health", REMOTE_ADDR="203.0.113.5")
    assert response.status_code == 200
    assert set(response.json()) == {"status", "timestamp", "version", "services", "warmup"}
    assert "sqlite3" not in response.content.decode() and "postgres://" not in response.content.decode()


@pytest.mark.parametrize("header", ["HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP"])
def test_a_request_through_a_proxy_is_not_local(client, header):
    # A reverse proxy on the same machine connects from 127.0.0.1 for everyone it serves.
    response = client.get("/conversations", **{header: "203.0.113.5"})
    assert response.status_code == 403


async def test_sockets_from_other_addresses_are_refused():
    accepted, _code, _ = await open_socket(address="203.0.113.5")
    assert accepted is False
    accepted, _code, socket = await open_socket()
    assert accepted is True
    await socket.disconnect()
    accepted, _code, _ = await open_socket(headers=[(b"x-forwarded-for", b"203.0.113.5")])
    assert accepted is False
