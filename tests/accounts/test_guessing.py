"""Failed credentials are counted per address and per user name: the admin's login and bearer
tokens answer 429 past RATE_LIMIT_LOGIN_FAILURES, before any credential is checked."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import sync_to_async
from django.test import Client, override_settings

from accounts.tokens import token_create
from dreamytin.config import Rate
from tests.accounts.sockets import open_socket, unique_loopback

pytestmark = pytest.mark.django_db(transaction=True)
TOKEN = "t0ken-for-tests-0123456789abcdefghijKLMN"


def login(address: str, username: str, password: str) -> int:
    # A client of its own per attempt: no session or cookie carries over between guesses.
    client = Client(enforce_csrf_checks=False)
    response = client.post(
        "/admin/login/?next=/admin/", {"username": username, "password": password}, REMOTE_ADDR=address
    )
    return response.status_code


@pytest.fixture
def root(django_user_model):
    name = f"root-{uuid.uuid4().hex[:8]}"  # the Redis counters outlive a run
    django_user_model.objects.create_superuser(name, password="the-right-password-1")
    return name


def test_admin_password_guessing_is_refused_per_address(root):
    address = unique_loopback()
    with override_settings(AUTH_MODE="django", RATE_LIMIT_LOGIN_FAILURES=Rate(5, 3600)):
        guesses = [login(address, f"nobody-{n}", "guess") for n in range(5)]
        refused = login(address, root, "the-right-password-1")  # right, but this address guessed
        elsewhere = login(unique_loopback(), root, "the-right-password-1")
    assert guesses == [200] * 5  # the form again, with its error
    assert refused == 429
    assert elsewhere == 302  # logged in


def test_admin_password_guessing_is_refused_per_user_name(root):
    with override_settings(AUTH_MODE="django", RATE_LIMIT_LOGIN_FAILURES=Rate(5, 3600)):
        guesses = [login(unique_loopback(), root, f"guess-{n}") for n in range(5)]
        refused = login(unique_loopback(), root, "the-right-password-1")
        other_user = login(unique_loopback(), f"{root}-x", "guess")
    assert guesses == [200] * 5 and refused == 429
    assert other_user == 200


def test_bad_bearer_tokens_are_refused_per_address_rest_and_socket(client):
    address = unique_loopback()
    with override_settings(AUTH_MODE="token", AUTH_TOKEN=TOKEN, RATE_LIMIT_LOGIN_FAILURES=Rate(3, 3600)):
        codes = [
            client.get("/models", REMOTE_ADDR=address, HTTP_AUTHORIZATION=f"Bearer wrong-{n}").status_code
            for n in range(3)
        ]
        refused = client.get("/models", REMOTE_ADDR=address, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        no_token = client.get("/models", REMOTE_ADDR=address)
        elsewhere = client.get("/models", REMOTE_ADDR=unique_loopback(), HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert codes == [401, 401, 401]
    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
    assert 0 < int(refused["Retry-After"]) <= 3600
    assert no_token.status_code == 401  # sending nothing is not a guess, and is still refused
    assert elsewhere.status_code == 200


async def test_bad_personal_tokens_on_sockets_count_too(django_user_model):
    alice = await django_user_model.objects.acreate(username=f"alice-{uuid.uuid4().hex[:8]}")
    _, raw = await sync_to_async(token_create)(user=alice)
    address = unique_loopback()
    with override_settings(AUTH_MODE="django", RATE_LIMIT_LOGIN_FAILURES=Rate(2, 3600)):
        tries = [
            (await open_socket(f"/ws/guess{n}", address=address, subprotocols=["bearer", f"dt_wrong{n}"]))
            for n in range(2)
        ]
        accepted, _sub, _refused = await open_socket("/ws/guess-ok", address=address, subprotocols=["bearer", raw])
        ok_elsewhere, _sub, other = await open_socket("/ws/guess-ok2", subprotocols=["bearer", raw])
    assert [accepted for accepted, _, _ in tries] == [False, False]
    assert accepted is False  # the right token, from an address that guessed
    assert ok_elsewhere is True
    await other.disconnect()
