"""PROVIDER_TIMEOUT kept by us around every streamed model response, whatever the route.

LiteLLM does not honour it on every route: its Gemini route streams through a module-level
HTTP client and ignores the request's timeout, and its Anthropic route took seconds more than
asked. So the wait for each event of the model's stream (the first one, then each next one) has
a deadline of our own; a missed deadline cancels the read, which closes the provider's
connection, and ends the request with `ProviderTimeout`, a `TimeoutError` (`provider_timeout`).
On the LiteLLM routes, a stream that ends is also checked to have been whole (chat.provider_bodies).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from agents import Model
from agents.items import ModelResponse, TResponseStreamEvent

from chat.provider_bodies import bodies_check_whole, bodies_mark


class ProviderTimeout(TimeoutError):
    """The provider sent nothing for PROVIDER_TIMEOUT seconds."""


class DeadlineModel(Model):
    """A model whose streamed responses wait at most `timeout` seconds for each event."""

    def __init__(self, inner: Model, timeout: float, *, check_whole: bool = False) -> None:
        self.inner = inner
        self.timeout = timeout
        self.check_whole = check_whole  # fail a stream whose body was not whole (chat.provider_bodies)

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        try:
            async with asyncio.timeout(self.timeout):
                return await self.inner.get_response(*args, **kwargs)
        except TimeoutError as exc:
            raise ProviderTimeout(f"no response within {self.timeout:g} s") from exc

    async def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[TResponseStreamEvent]:
        events = self.inner.stream_response(*args, **kwargs)
        mark = bodies_mark()
        try:
            while True:
                try:
                    # In this task (the SDK's spans live in its context): at the deadline, the
                    # pending read is cancelled, which unwinds the route's stream and closes
                    # its connection, so the provider stops generating.
                    async with asyncio.timeout(self.timeout):
                        event = await anext(events)
                except StopAsyncIteration:
                    if self.check_whole:
                        bodies_check_whole(mark)
                    return
                except TimeoutError as exc:
                    raise ProviderTimeout(f"the provider sent nothing for {self.timeout:g} s") from exc
                yield event
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    async def close(self) -> None:
        await self.inner.close()

    async def _cleanup_on_run_end(self, owner: object) -> None:
        await self.inner._cleanup_on_run_end(owner)

    def get_retry_advice(self, request: Any) -> Any:
        return self.inner.get_retry_advice(request)
