"""Fast path: an OpenAI client that builds streamed chunks with pydantic's validator
(`LeanOpenAI`). `chat.openai_client` uses it while FAST_PATHS is on; off, the stock
`AsyncOpenAI`. It overrides a private method of the pinned openai release:
tests/chat/fast_paths/test_private_api.py fails, naming it, if that moves."""

from __future__ import annotations

from typing import Any

import httpx
import pydantic
from openai import AsyncOpenAI
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
