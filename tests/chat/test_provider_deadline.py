"""PROVIDER_TIMEOUT on every hosted route (native OpenAI, LiteLLM's Anthropic and Gemini): a
provider that stalls before its first byte, or in the middle of its stream, ends the turn with
`provider_timeout` about PROVIDER_TIMEOUT later, and its stream is closed (it stops generating)."""

from __future__ import annotations

import asyncio
import time

import pytest
from django.test import override_settings

from tests.fake_provider import text

pytestmark = pytest.mark.django_db(transaction=True)
MODELS = ["gpt-4o", "claude-sonnet-4-5", "gemini-2.5-flash"]
TIMEOUT = 0.5
STALL = 2.5  # the fake provider's silence: far beyond the deadline


async def warm_turn(ws, provider, model: str) -> None:
    # LiteLLM's first call on a route imports and builds for a second or more before it sends
    # anything: not the provider's wait, which is what is measured here.
    provider.script(text("warm"))
    assert (await ws.turn("warm up", model=model))[-1]["finish_reason"] == "stop"


async def timed_turn(ws, model: str) -> tuple[list[dict], float]:
    started = time.monotonic()
    with override_settings(PROVIDER_TIMEOUT=TIMEOUT):
        events = await ws.turn("hi", model=model)
    return events, time.monotonic() - started


def assert_timed_out(events: list[dict], took: float) -> None:
    assert events[-1]["type"] == "stream_end" and events[-1]["finish_reason"] == "error", events
    error = next(event for event in events if event["type"] == "error")
    assert error["code"] == "provider_timeout" and error["retryable"] is True
    assert took < TIMEOUT + 1, took


async def assert_stream_closed(provider) -> None:
    # The fake provider notices the hang-up when it next writes, after its stall.
    deadline = time.monotonic() + STALL + 2
    while provider.requests[-1].closed_early_at is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert provider.requests[-1].closed_early_at is not None


@pytest.mark.parametrize("model", MODELS)
async def test_a_provider_silent_before_its_first_byte_times_out(ws, provider, model):
    await warm_turn(ws, provider, model)
    provider.script(text("late", ttft=STALL))
    events, took = await timed_turn(ws, model)
    assert_timed_out(events, took)
    assert [e for e in events if e["type"] == "stream"] == []
    await assert_stream_closed(provider)


@pytest.mark.parametrize("model", MODELS)
async def test_a_provider_stalling_mid_stream_times_out(ws, provider, model):
    await warm_turn(ws, provider, model)
    provider.script(text("first", "second", "third", interval=STALL))
    events, took = await timed_turn(ws, model)
    assert_timed_out(events, took)
    await assert_stream_closed(provider)
    assert len(provider.requests) == 2
