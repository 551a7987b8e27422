"""Fast path: an OpenAI client that builds streamed chunks with pydantic's validator, and sends
a request's messages and tools as they are (`LeanOpenAI`). `chat.openai_client` uses it while
FAST_PATHS is on; off, the stock `AsyncOpenAI`. It overrides a private method of the pinned
openai release: tests/chat/fast_paths/test_private_api.py fails, naming it, if that moves."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property
from typing import Any

import httpx
import pydantic
from openai import AsyncOpenAI, NotGiven, Omit, omit
from openai.resources.chat import AsyncChat, AsyncCompletions
from openai.types.chat import ChatCompletionChunk


class LeanOpenAI(AsyncOpenAI):
    """The OpenAI client without two pure-Python costs that grow with the traffic it carries.

    - Streamed chunks are built by pydantic's compiled validator. The stock client builds every
      response object with its lenient `construct_type`, about 125 µs per chunk here, the
      largest single cost of relaying a token; the validator builds the same object in about
      8 µs. A chunk the validator rejects (an OpenAI-compatible server's own finish reason,
      say) takes the lenient path, as before.
    - Chat Completions requests send their messages and tools as they are (`_PlainCompletions`).
    """

    def _process_response_data(self, *, data: object, cast_to: type[Any], response: httpx.Response) -> Any:
        if cast_to is ChatCompletionChunk and type(data) is dict:
            try:
                return ChatCompletionChunk.model_validate(data)
            except pydantic.ValidationError:
                pass
        return super()._process_response_data(data=data, cast_to=cast_to, response=response)

    @cached_property
    def chat(self) -> AsyncChat:
        return _Chat(self)


class _Chat(AsyncChat):
    @cached_property
    def completions(self) -> AsyncCompletions:
        return _PlainCompletions(self._client)


class _PlainCompletions(AsyncCompletions):
    """`create` with the messages and tools passed through `extra_body`, which the client sends
    as it is.

    The stock `create` first walks every request parameter against its TypedDict (each message
    against every member of the message union) to apply aliases and formats, and no Chat
    Completions parameter has any. That walk cost about 150 µs per message, so a turn's every
    request paid again for the whole history: 3.4 ms at 20 messages. The body sent is the
    same; a caller's own `extra_body` still wins, as it does in the stock client.
    """

    async def create(  # type: ignore[override]
        self,
        *,
        messages: Iterable[Any],
        tools: Iterable[Any] | Omit | NotGiven = omit,
        extra_body: dict[str, Any] | None = None,
        **params: Any,
    ) -> Any:
        plain: dict[str, Any] = {"messages": list(messages)}
        if not isinstance(tools, Omit | NotGiven):  # the SDK omits tools with `omit`; older callers `NOT_GIVEN`
            plain["tools"] = list(tools)
        return await super().create(messages=[], extra_body={**plain, **(extra_body or {})}, **params)
