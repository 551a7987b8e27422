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
        # In this task (the SDK's spans live in its context): at the deadline, the pending read
        # is cancelled, which unwinds the route's stream and closes its connection, so the
        # provider stops generating.
        deadline = _ReadDeadline(self.timeout)
        try:
            while True:
                deadline.wait_begin()
                try:
                    event = await anext(events)
                except StopAsyncIteration:
                    if self.check_whole:
                        bodies_check_whole(mark)
                    return
                except asyncio.CancelledError:
                    if deadline.expired():
                        raise ProviderTimeout(f"the provider sent nothing for {self.timeout:g} s") from None
                    raise
                finally:
                    deadline.wait_end()
                yield event
        finally:
            deadline.close()
            await events.aclose()  # type: ignore[attr-defined]

    async def close(self) -> None:
        await self.inner.close()

    def get_retry_advice(self, request: Any) -> Any:
        return self.inner.get_retry_advice(request)


class _ReadDeadline:
    """The deadline of each read of one stream, on one timer for the whole stream.

    `asyncio.timeout` around every read armed and cancelled a timer per streamed event (about
    4% of a server's CPU at 200 streams). This timer is armed once and, when it fires, either
    cancels a read that has waited `timeout` seconds or re-arms itself for the current read's
    deadline; between reads it is left to lapse."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        self.cancelling = self.task.cancelling() if self.task is not None else 0
        self.since: float | None = None  # when the pending read began; None between reads
        self.timer: asyncio.TimerHandle | None = None
        self.fired = False

    def wait_begin(self) -> None:
        self.since = self.loop.time()
        if self.timer is None:
            self.timer = self.loop.call_at(self.since + self.timeout, self._check)

    def wait_end(self) -> None:
        self.since = None

    def expired(self) -> bool:
        """Whether the read was cancelled by this deadline, and by nothing else: as
        `asyncio.timeout`, a cancel of the task itself is passed on."""
        return self.fired and self.task is not None and self.task.uncancel() <= self.cancelling

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _check(self) -> None:
        self.timer = None
        if self.since is None or self.task is None:
            return  # between reads: the next read arms it again
        due = self.since + self.timeout
        if self.loop.time() >= due:
            self.fired = True
            self.task.cancel()
        else:
            self.timer = self.loop.call_at(due, self._check)
