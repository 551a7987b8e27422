"""Rate limits (turns, REST requests) and open sockets per address; in Redis when REDIS_URL is
set (the PostgreSQL + Redis run), in the process otherwise."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from django.conf import settings
from django.test import override_settings

from accounts import limits
from chat.runtime import runtime
from dreamytin.config import Rate
from tests.accounts.sockets import open_socket, unique_loopback
from tests.fake_provider import text

pytestmark = pytest.mark.django_db(transaction=True)


def test_rest_requests_past_the_rate_are_429_with_retry_after(client):
    address = unique_loopback()
    with override_settings(RATE_LIMIT_REQUESTS=Rate(3, 3600)):
        codes = [client.get("/models", REMOTE_ADDR=address).status_code for _ in range(4)]
        refused = client.get("/models", REMOTE_ADDR=address)
        other = client.get("/models", REMOTE_ADDR=unique_loopback())
    assert codes == [200, 200, 200, 429]
    assert refused.json()["code"] == "rate_limited" and 0 < refused.json()["retry_after"] <= 3600
    assert 0 < int(refused["Retry-After"]) <= 3600
    assert other.status_code == 200  # counted per address
    assert client.get("/health", REMOTE_ADDR=address).status_code == 200  # probes are never limited


async def test_turns_past_the_rate_get_rate_limited_with_retry_after(provider):
    address = unique_loopback()
    with override_settings(RATE_LIMIT_TURNS=Rate(2, 3600)):
        accepted, _sub, socket = await open_socket("/ws/turns1", address=address)
        assert accepted
        await socket.receive_json_from()
        for _ in range(2):
            provider.script(text("ok"))
            await socket.send_json_to({"message": "hi"})
            while (await socket.receive_json_from(timeout=10))["type"] != "stream_end":
                pass
        await socket.send_json_to({"message": "one more"})
        event = await socket.receive_json_from()
        assert event["type"] == "error" and event["code"] == "rate_limited"
        assert event["retryable"] is True and 0 < event["retry_after"] <= 3600
        assert await socket.receive_nothing(timeout=0.1)  # a lone error: no turn, no stream_end
        assert len(provider.requests) == 2
        await socket.disconnect()


async def test_sockets_past_the_per_address_limit_are_refused_and_slots_come_back():
    address = unique_loopback()
    with override_settings(MAX_CONNECTIONS_PER_ADDRESS=3):
        opened = [await open_socket(f"/ws/conn{i}", address=address) for i in range(3)]
        assert all(accepted for accepted, _, _ in opened)
        refused, _code, _ = await open_socket("/ws/conn3", address=address)
        assert refused is False
        elsewhere, _sub, other = await open_socket("/ws/conn4", address=unique_loopback())
        assert elsewhere is True
        await other.disconnect()
        await opened[0][2].disconnect()
        await asyncio.sleep(0.05)
        again, _sub, socket = await open_socket("/ws/conn5", address=address)
        assert again is True
        for communicator in (socket, opened[1][2], opened[2][2]):
            await communicator.disconnect()


@pytest.mark.skipif(not settings.REDIS_URL, reason="the shared counters need REDIS_URL")
async def test_a_crashed_workers_sockets_expire_from_the_redis_count(monkeypatch):
    """A worker that died never released its slots: they stop counting once they expire."""
    address = unique_loopback()
    monkeypatch.setattr(limits, "CONNECTION_TTL", 0.5)
    slots = [await limits.connection_acquire(address, 2) for _ in range(2)]
    assert all(slots)
    assert await limits.connection_acquire(address, 2) is None
    runtime().limits.held.pop(slots[0].key)  # the process "dies": nothing refreshes its members
    await asyncio.sleep(0.7)
    assert await limits.connection_acquire(address, 2) is not None


@pytest.mark.skipif(not settings.REDIS_URL, reason="the shared counters need REDIS_URL")
async def test_rate_counters_live_in_redis_with_an_expiry():
    who = unique_loopback()
    await limits.rate_hit("turns", who, Rate(5, 60))
    client = runtime().limits.redis()
    keys = [key async for key in client.scan_iter(f"{limits.PREFIX}turns:{who}:*")]
    assert len(keys) == 1 and 0 < await client.ttl(keys[0]) <= 61


def test_the_window_says_when_to_retry():
    verdict = asyncio.run(limits.rate_hit("t", unique_loopback(), None))
    assert verdict.allowed
    rate = limits.FrameRate(Rate(1, 10))
    assert rate.hit(100.0) == ("ok", 0.0)
    assert rate.hit(101.0) == ("refuse", 9.0)
    assert rate.hit(102.0)[0] == "drop"
    assert rate.hit(110.0) == ("ok", 0.0)  # a new window


async def test_in_process_counters_drop_ended_windows_never_live_ones(monkeypatch):
    if settings.REDIS_URL:
        pytest.skip("the in-process counters are used without REDIS_URL")
    monkeypatch.setattr(runtime().limits, "windows", {})
    monkeypatch.setattr(limits, "_LOCAL_COUNTERS", 10)
    rate = Rate(1, 3600)
    assert (await limits.rate_hit("t", "victim", rate)).allowed
    runtime().limits.windows[("old", "gone")] = (1, 5)  # a window that ended long ago
    for i in range(20):
        await limits.rate_hit("t", f"flood{i}", rate)
    assert ("old", "gone") not in runtime().limits.windows
    assert not (await limits.rate_hit("t", "victim", rate)).allowed


def _unique_ipv6_network() -> str:
    """A /64 no earlier run counted against (the Redis counters outlive a run)."""
    value = uuid.uuid4().int
    return f"2001:db8:{value % 65536:x}:{value // 65536 % 65536:x}"


TOKEN = "t0ken-for-tests-0123456789abcdefghijKLMN"


def test_an_ipv6_client_is_counted_by_its_64_and_a_mapped_ipv4_as_ipv4(client):
    """Every address of a /64 is one client; `::ffff:a.b.c.d` is the IPv4 client a.b.c.d."""
    network = _unique_ipv6_network()
    mapped = unique_loopback()
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
    with override_settings(AUTH_MODE="token", AUTH_TOKEN=TOKEN, RATE_LIMIT_REQUESTS=Rate(3, 3600)):
        spread = [client.get("/models", REMOTE_ADDR=f"{network}::{n}", **bearer).status_code for n in range(1, 5)]
        next_network = client.get("/models", REMOTE_ADDR=f"{_unique_ipv6_network()}::1", **bearer)
        both_forms = [
            client.get("/models", REMOTE_ADDR=address, **bearer).status_code
            for address in (mapped, f"::ffff:{mapped}", mapped, f"::ffff:{mapped}")
        ]
    assert spread == [200, 200, 200, 429]
    assert next_network.status_code == 200
    assert both_forms == [200, 200, 200, 429]


def test_the_ipv6_prefix_is_configurable(client):
    network = _unique_ipv6_network()
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
    with override_settings(
        AUTH_MODE="token", AUTH_TOKEN=TOKEN, RATE_LIMIT_REQUESTS=Rate(1, 3600), RATE_LIMIT_IPV6_PREFIX=128
    ):
        codes = [client.get("/models", REMOTE_ADDR=f"{network}::{n}", **bearer).status_code for n in (1, 2, 1)]
    assert codes == [200, 200, 429]


async def test_sockets_of_one_ipv6_64_share_the_connection_limit():
    network = _unique_ipv6_network()
    with override_settings(AUTH_MODE="token", AUTH_TOKEN=TOKEN, MAX_CONNECTIONS_PER_ADDRESS=2):
        opened = [
            await open_socket(f"/ws/v6conn{n}", address=f"{network}::{n}", subprotocols=["bearer", TOKEN])
            for n in range(1, 4)
        ]
    assert [accepted for accepted, _, _ in opened] == [True, True, False]
    for _, _, communicator in opened:
        await communicator.disconnect()
