"""Broken streams in the LiteLLM routes' own formats (Anthropic Messages, Gemini
`streamGenerateContent`), beyond a plain cut: cut in the middle of an event's JSON, ended without
the format's stop, an unknown event, the format's own error event, a line that is not JSON.
Each ends the turn with a coded error and `stream_end`, or, where the stream still says the reply
is whole (an unknown event is to be ignored), with the whole reply."""

from __future__ import annotations

import pytest

from tests.fake_provider import Reply, _anthropic, _gemini, text

pytestmark = pytest.mark.django_db(transaction=True)
CLAUDE, GEMINI = "claude-sonnet-4-5", "gemini-2.5-flash"
WORDS = ("Hello", " there", " friend")


def anthropic(**kwargs) -> list[str]:
    return _anthropic(text(*WORDS, **kwargs))


def gemini(**kwargs) -> list[str]:
    return _gemini(text(*WORDS, **kwargs))


def without(chunks: list[str], *markers: str) -> list[str]:
    return [chunk for chunk in chunks if not any(marker in chunk for marker in markers)]


ANTHROPIC_ERROR = (
    'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n'
)
GEMINI_ERROR = 'data: {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}\n\n'
NOT_JSON = "data: {this is not json\n\n"
ANTHROPIC_HALF = [*anthropic()[:3], 'event: content_block_delta\ndata: {"type": "content_bl']
GEMINI_HALF = [*gemini()[:1], 'data: {"candidates": [{"content": {"ro']

BROKEN = {
    # name: (model, chunks, cut: close the connection after the chunks instead of ending the body)
    "anthropic cut mid-json": (CLAUDE, ANTHROPIC_HALF, True),
    "anthropic ends mid-json": (CLAUDE, ANTHROPIC_HALF, False),
    "anthropic cut between events": (CLAUDE, anthropic()[:4], True),
    "anthropic without its stop": (CLAUDE, without(anthropic(), "message_delta", "message_stop"), False),
    "anthropic without message_stop": (CLAUDE, without(anthropic(), "message_stop"), False),
    "anthropic error event": (CLAUDE, [*anthropic()[:3], ANTHROPIC_ERROR], False),
    "anthropic not json": (CLAUDE, [*anthropic()[:3], NOT_JSON, *anthropic()[3:]], False),
    "gemini cut mid-json": (GEMINI, GEMINI_HALF, True),
    "gemini ends mid-json": (GEMINI, GEMINI_HALF, False),
    "gemini cut between events": (GEMINI, gemini()[:2], True),
    "gemini without its finish": (GEMINI, gemini()[:-1], False),
    "gemini error object": (GEMINI, [*gemini()[:1], GEMINI_ERROR], False),
    "gemini not json": (GEMINI, [*gemini()[:1], NOT_JSON, *gemini()[1:]], False),
}


@pytest.mark.parametrize("case", BROKEN)
async def test_a_broken_stream_ends_with_a_coded_error(ws, provider, case):
    model, chunks, cut = BROKEN[case]
    # The fake provider cuts before the chunk at `cut_after`: one more, never sent.
    provider.script(Reply(raw=[*chunks, "data: {}\n\n"] if cut else chunks, cut_after=len(chunks) if cut else None))
    events = await ws.turn("hi", model=model)
    assert events[-1]["type"] == "stream_end" and events[-1]["finish_reason"] == "error", events
    error = next(event for event in events if event["type"] == "error")
    assert error["code"] == "provider_unavailable" and error["retryable"] is True, error


@pytest.mark.parametrize(
    ("model", "chunks"),
    [
        (CLAUDE, [*anthropic()[:3], 'event: surprise\ndata: {"type": "surprise"}\n\n', *anthropic()[3:]]),
        (GEMINI, [*gemini()[:1], 'data: {"surprise": true}\n\n', *gemini()[1:]]),
    ],
    ids=["anthropic", "gemini"],
)
async def test_an_unknown_event_in_a_whole_stream_is_ignored(ws, provider, model, chunks):
    provider.script(Reply(raw=chunks))
    events = await ws.turn("hi", model=model)
    assert events[-1]["finish_reason"] == "stop", events
    assert "".join(e["content"] for e in events if e["type"] == "stream") == "".join(WORDS)
