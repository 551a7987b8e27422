"""The OpenAI client the native route streams with (and the benchmark's library baseline)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pydantic
from openai import AsyncOpenAI, DefaultAsyncHttpxClient
from openai.types.chat import ChatCompletionChunk

from chat.asyncio_network import asyncio_network_install


class ChunkValidatingOpenAI(AsyncOpenAI):
    """The OpenAI client, with streamed chunks built by pydantic's validator.

    The client builds every response object with its lenient pure-Python `construct_type`, which
    costs about 125 µs per chunk here, the largest single cost of relaying a token; pydantic's
    compiled validator builds the same object in about 8 µs. A chunk the validator rejects (an
    OpenAI-compatible server's own finish reason, say) takes the lenient path, as before.
    """

    def _process_response_data(self, *, data: object, cast_to: type[Any], response: httpx.Response) -> Any:
        if cast_to is ChatCompletionChunk and type(data) is dict:
            try:
                return ChatCompletionChunk.model_validate(data)
            except pydantic.ValidationError:
                pass
        return super()._process_response_data(data=data, cast_to=cast_to, response=response)


def openai_client_build(
    *,
    base_url: str | None,
    api_key: str,
    timeout: float,
    response_hook: Callable[[httpx.Response], Awaitable[None]] | None = None,
) -> ChunkValidatingOpenAI:
    """A client on the asyncio network backend (`chat.asyncio_network`), with no retries of its
    own: a turn retries only before anything reached the browser (`chat.runs`)."""
    http_client = DefaultAsyncHttpxClient(event_hooks={"response": [response_hook] if response_hook else []})
    return ChunkValidatingOpenAI(
        base_url=base_url,
        api_key=api_key,
        timeout=timeout,
        max_retries=0,
        http_client=asyncio_network_install(http_client),
    )
