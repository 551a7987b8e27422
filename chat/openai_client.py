"""The OpenAI clients the native route and the local model stream with (and the benchmark's
library baseline): with FAST_PATHS on, `LeanOpenAI`, a fast path that bench.ab measured saving
46% of a chunk's CPU (docs/performance.md); off, the stock client.

`LeanOpenAI` overrides a private method of the pinned openai release:
tests/chat/test_private_api.py fails, naming it, if that moves."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pydantic
from django.conf import settings
from openai import AsyncOpenAI, DefaultAsyncHttpxClient
from openai.types.chat import ChatCompletionChunk


class LeanOpenAI(AsyncOpenAI):
    """The OpenAI client with streamed chunks built by pydantic's compiled validator.

    The stock client builds every response object with its lenient `construct_type`, about
    125 µs per chunk here, the largest single cost of relaying a token; the validator builds the
    same object in about 8 µs. A chunk the validator rejects (an OpenAI-compatible server's own
    finish reason, say) takes the lenient path, as before.
    """

    def _process_response_data(self, *, data: object, cast_to: type[Any], response: httpx.Response) -> Any:
        if cast_to is ChatCompletionChunk and type(data) is dict:
            try:
                return ChatCompletionChunk.model_validate(data)
            except pydantic.ValidationError:
                pass
        return super()._process_response_data(data=data, cast_to=cast_to, response=response)


def openai_client_class() -> type[AsyncOpenAI]:
    # Read per call, not at import: a test (or the benchmark's other side) may turn it off.
    return LeanOpenAI if settings.FAST_PATHS else AsyncOpenAI


def openai_client_build(
    *,
    base_url: str | None,
    api_key: str,
    timeout: float,
    response_hook: Callable[[httpx.Response], Awaitable[None]] | None = None,
) -> AsyncOpenAI:
    """A client with no retries of its own: a turn retries only before anything reached the
    browser (`chat.turn.runner`)."""
    http_client = DefaultAsyncHttpxClient(event_hooks={"response": [response_hook] if response_hook else []})
    return openai_client_class()(
        base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0, http_client=http_client
    )
