"""Broken streams on the LiteLLM routes (Anthropic, Gemini), through the fake provider's own
formats: a malformed event, a stream cut after each of its first chunks. Each ends the turn with
a coded error, then `stream_end`."""

from __future__ import annotations

import pytest

from tests.fake_provider import Reply, text

pytestmark = pytest.mark.django_db(transaction=True)
LITELLM_MODELS = ["claude-sonnet-4-5", "gemini-2.5-flash"]


def the_error(events: list[dict]) -> dict:
    assert events[-1]["type"] == "stream_end" and events[-1]["finish_reason"] == "error", events
    return next(event for event in events if event["type"] == "error")


@pytest.mark.parametrize("model", LITELLM_MODELS)
@pytest.mark.parametrize("cut_after", [1, 2, 3])
async def test_a_cut_stream_is_provider_unavailable(ws, provider, model, cut_after):
    provider.script(text("a", "b", "c", "d", cut_after=cut_after))
    error = the_error(await ws.turn("hi", model=model))
    assert error["code"] == "provider_unavailable" and error["retryable"] is True


@pytest.mark.parametrize("model", LITELLM_MODELS)
async def test_a_malformed_stream_is_a_coded_error(ws, provider, model):
    provider.script(Reply(text=["partial", "more"], malformed=True))
    assert the_error(await ws.turn("hi", model=model))["code"] == "provider_unavailable"
