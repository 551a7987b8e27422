"""`GET /metrics` in one process: a turn with a tool call moves the series the contract names,
and only loopback clients or the METRICS_TOKEN may read them."""

from __future__ import annotations

import asyncio

import pytest
from django.conf import settings
from django.test import AsyncClient, override_settings

from chat.protocol import Stream
from chat.runtime import runtime
from chat.store import services
from observability.metrics import local_model_held
from tests.chat.turn.test_relay import OtherWorker
from tests.conftest import connect
from tests.fake_provider import error, text, tools
from tests.observability.scrape import samples, value

pytestmark = pytest.mark.django_db(transaction=True)
TOKEN = "m" * 40


async def scrape(**headers: str) -> dict:
    answer = await AsyncClient().get("/metrics", **headers)
    assert answer.status_code == 200, answer.content
    assert answer["Content-Type"].startswith("text/plain; version=")
    return samples(answer.content.decode())


async def test_a_tool_turn_counts_turn_tokens_cost_tool_and_first_token(ws, provider, workspace):
    (workspace / "todo.md").write_text("- write tests\n")
    before = await scrape()
    provider.script(tools(("read_file", {"path": "todo.md"})), text("You need to ", "write tests."))
    events = await ws.turn("What is on my list?", model="gpt-4o")
    assert events[-1]["finish_reason"] == "stop"
    after = await scrape()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("dreamytin_turns_total", model="gpt-4o", finish_reason="stop") == 1
    assert moved("dreamytin_tool_calls_total", tool="read_file", ok="true") == 1
    # Two model requests of the fake's 12 input and 7 output tokens each.
    assert moved("dreamytin_tokens_total", model="gpt-4o", kind="input") == 24
    assert moved("dreamytin_tokens_total", model="gpt-4o", kind="output") == 14
    assert moved("dreamytin_cost_usd_total", model="gpt-4o") == pytest.approx(events[-1]["usage"]["cost_usd"])
    assert moved("dreamytin_turn_first_token_seconds_count", model="gpt-4o") == 1
    assert moved("dreamytin_turn_duration_seconds_count", model="gpt-4o") == 1
    # Ended: no longer counted as running (measured against before: the gauge is the process's).
    assert moved("dreamytin_turns_running") == 0


async def test_a_failed_tool_and_a_failed_turn_are_counted_by_outcome_and_code(ws, provider):
    before = await scrape()
    provider.script(tools(("read_file", {"path": "missing.txt"})), text("Not there."))
    await ws.turn("read it", model="gpt-4o")
    provider.script(error(401, "bad key"))
    failed = await ws.turn("again", model="gpt-4o")
    after = await scrape()
    code = next(event["code"] for event in failed if event["type"] == "error")
    assert (
        value(after, "dreamytin_tool_calls_total", tool="read_file", ok="false")
        - value(before, "dreamytin_tool_calls_total", tool="read_file", ok="false")
        == 1
    )
    assert value(after, "dreamytin_errors_total", code=code) - value(before, "dreamytin_errors_total", code=code) == 1
    assert (
        value(after, "dreamytin_turns_total", model="gpt-4o", finish_reason="error")
        - value(before, "dreamytin_turns_total", model="gpt-4o", finish_reason="error")
        == 1
    )


async def test_open_sockets_and_refused_frames_are_counted(provider):
    before = await scrape()
    first, second = await connect("sockets1"), await connect("sockets2")
    during = await scrape()
    await first.send({"type": "nonsense"})
    refused = await first.receive()
    await first.communicator.disconnect()
    await second.communicator.disconnect()
    after = await scrape()
    assert value(during, "dreamytin_sockets_open") - value(before, "dreamytin_sockets_open") == 2
    assert value(after, "dreamytin_sockets_open") == value(before, "dreamytin_sockets_open")
    code = refused["code"]
    assert value(after, "dreamytin_errors_total", code=code) - value(before, "dreamytin_errors_total", code=code) == 1


def test_only_loopback_or_the_metrics_token_may_read(client):
    outside = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics", **outside).status_code == 403
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 403  # via a local proxy
    with override_settings(METRICS_TOKEN=TOKEN):
        refused = client.get("/metrics", **outside)
        assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")
        assert client.get("/metrics", **outside, HTTP_AUTHORIZATION="Bearer " + "x" * 40).status_code == 401
        right = client.get("/metrics", **outside, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert right.status_code == 200 and b"dreamytin_turns_running" in right.content
        assert client.get("/metrics").status_code == 200  # loopback, no token
    with override_settings(AUTH_MODE="token", AUTH_TOKEN="a" * 40, METRICS_TOKEN=TOKEN):
        # The API's token is not the metrics token, and the metrics token opens nothing else.
        assert client.get("/metrics", **outside, HTTP_AUTHORIZATION=f"Bearer {'a' * 40}").status_code == 401
        assert client.get("/metrics", **outside, HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
        assert client.get("/conversations", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 401
    assert client.post("/metrics", content_type="application/json").status_code == 405


async def test_metrics_off_is_a_404_and_counts_nothing(ws, provider):
    before = await scrape()
    with override_settings(METRICS=False):
        assert (await AsyncClient().get("/metrics")).status_code == 404
        provider.script(text("Quiet."))
        await ws.turn("hello", model="gpt-4o")
    after = await scrape()
    assert value(after, "dreamytin_turns_total", model="gpt-4o", finish_reason="stop") == value(
        before, "dreamytin_turns_total", model="gpt-4o", finish_reason="stop"
    )


@pytest.mark.skipif(not settings.REDIS_URL, reason="the relay runs only with REDIS_URL")
async def test_events_of_a_turn_on_another_worker_count_their_relay_lag(provider):
    turn, _ = await services.aturn_start(conversation_id="lag1", model="gpt-4o", user_message="hi")
    other = OtherWorker("lag1", str(turn.id))
    socket = await connect("lag1")
    before = await scrape()
    for word in ("one ", "two "):
        await other.send(Stream(content=word))
        await socket.receive(timeout=5)
    after = await scrape()
    await socket.communicator.disconnect()
    reads = value(after, "dreamytin_relay_lag_seconds_count") - value(before, "dreamytin_relay_lag_seconds_count")
    waited = value(after, "dreamytin_relay_lag_seconds_sum") - value(before, "dreamytin_relay_lag_seconds_sum")
    assert reads >= 1 and 0 <= waited / reads < 1.0


async def test_turns_queued_for_the_local_model_are_counted_until_served_or_cancelled():
    lock = asyncio.Lock()
    before = await scrape()
    async with local_model_held(lock):
        queued = asyncio.create_task(_hold(lock))
        cancelled = asyncio.create_task(_hold(lock))
        await asyncio.sleep(0.05)
        waiting = "dreamytin_local_model_waiting"
        assert value(await scrape(), waiting) - value(before, waiting) == 2
        cancelled.cancel()
        await asyncio.sleep(0)
        assert value(await scrape(), waiting) - value(before, waiting) == 1
    await queued
    after = await scrape()
    assert value(after, "dreamytin_local_model_waiting") == value(before, "dreamytin_local_model_waiting")
    served = "dreamytin_local_model_wait_seconds_count"
    assert value(after, served) - value(before, served) == 2  # this one and the queued one, not the cancelled
    assert not lock.locked()


async def _hold(lock: asyncio.Lock) -> None:
    async with local_model_held(lock):
        pass


async def test_a_turn_cancelled_again_while_it_records_its_end_stops_counting_as_running(ws, provider):
    """A stopping process cancels what is left, a turn already ending included."""
    before = await scrape()
    provider.script(text(*[f"w{i} " for i in range(100)], interval=0.02))
    await ws.send({"message": "talk", "model": "gpt-4o"})
    while (await ws.receive())["type"] != "stream":
        pass
    run = runtime().turns["conv1"].run
    run.stop()
    while not run.task.done():  # again and again, as it records the cancel
        run.task.cancel()
        await asyncio.sleep(0)
    assert value(await scrape(), "dreamytin_turns_running") == value(before, "dreamytin_turns_running")
