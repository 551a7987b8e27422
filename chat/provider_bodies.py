"""The provider responses of the running turn: closed when the turn stops, and, on the LiteLLM
routes, checked to be whole.

LiteLLM ends a broken Anthropic or Gemini stream as if it had finished: a connection cut in the
middle of an event, a stream without its format's end (Anthropic's `message_stop`, Gemini's
`finishReason`), a line that is not JSON: each became a reply cut short that looked complete. So
their bodies are read alongside LiteLLM, and a body that was not whole fails the request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from contextvars import ContextVar

import httpcore
import httpx

# A stream's own end, per format: Anthropic, Gemini, OpenAI.
_STREAM_ENDS = (b'"message_stop"', b'"finishReason"', b"[DONE]")


class _TrackedBody(httpx.AsyncByteStream):
    """A response body that knows whether it was read to its end (and, when it is `checked`,
    whether its server-sent events were all JSON and included the stream's own end)."""

    def __init__(self, response: httpx.Response, *, checked: bool = False) -> None:
        self.response = response
        self.inner = response.stream
        self.finished = False
        self.checked = checked
        self.ended = False  # an event said the stream is over
        self.malformed = False  # an event was not JSON
        self._partial = b""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:  # type: ignore[union-attr]
            if self.checked:
                self._scan(chunk)
            yield chunk
        self.finished = True

    def _scan(self, chunk: bytes) -> None:
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if any(end in data for end in _STREAM_ENDS):
                self.ended = True
            if data and data != b"[DONE]":
                try:
                    json.loads(data)
                except ValueError:
                    self.malformed = True

    @property
    def whole(self) -> bool:
        # Not `finished`: LiteLLM stops reading an Anthropic body at its `message_stop`.
        return not self.checked or (self.ended and not self.malformed)

    async def aclose(self) -> None:
        await self.inner.aclose()  # type: ignore[union-attr]

    async def abort(self) -> None:
        """Close the connection of a body that was not read to its end, so the provider stops
        generating (and billing). Closing the response is not enough: when the SDK's reading
        task is cancelled mid-read, httpx marks the response closed before its connection is,
        and the cancel cuts that short. The connection's network stream (httpcore's public
        `network_stream` extension) closes it whatever state the response is in."""
        if self.finished:
            return  # a finished body's connection is back in the pool, healthy
        network_stream = self.response.extensions.get("network_stream")
        with suppress(httpx.HTTPError, httpcore.NetworkError, OSError):
            await self.response.aclose()
        if network_stream is not None:
            with suppress(httpcore.NetworkError, OSError):
                await network_stream.aclose()


# The provider responses of the running turn. The SDK runs model calls in tasks of its own,
# which inherit this context, so the turn can end the connections itself when it stops.
_turn_bodies: ContextVar[list[_TrackedBody] | None] = ContextVar("turn_bodies", default=None)


async def track_response(response: httpx.Response) -> None:
    bodies = _turn_bodies.get()
    if bodies is not None:
        body = _TrackedBody(response)
        response.stream = body
        bodies.append(body)


async def _track_checked_response(response: httpx.Response) -> None:
    bodies = _turn_bodies.get()
    if bodies is not None and response.headers.get("content-type", "").startswith("text/event-stream"):
        body = _TrackedBody(response, checked=True)
        response.stream = body
        bodies.append(body)


def track_litellm_responses(litellm: object) -> None:
    """Hook the HTTP client LiteLLM streams Anthropic and Gemini through (its module-level one,
    which takes no client from us: the SDK copies the model settings a client would ride in)."""
    handler = litellm.module_level_aclient  # type: ignore[attr-defined]
    hooks = handler.client.event_hooks
    hooks = {**hooks, "response": [*hooks["response"], _track_checked_response]}
    handler.client.event_hooks = hooks
    handler.event_hooks = hooks  # kept if LiteLLM remakes its client


def bodies_mark() -> int:
    """Where the running turn's responses stand, for `bodies_check_whole`."""
    bodies = _turn_bodies.get()
    return len(bodies) if bodies is not None else 0


def bodies_check_whole(mark: int) -> None:
    """Fail if a checked response since `mark` was not whole."""
    bodies = _turn_bodies.get() or []
    if not all(body.whole for body in bodies[mark:]):
        raise httpx.RemoteProtocolError("the provider's stream broke off, ended without its end, or was malformed")


@asynccontextmanager
async def provider_streams_closed() -> AsyncIterator[None]:
    """On cancel or failure, end every provider stream the block left unfinished."""
    bodies: list[_TrackedBody] = []
    token = _turn_bodies.set(bodies)
    try:
        yield
    except BaseException:
        # Shielded: a second cancel of the turn must not leave a stream open.
        await asyncio.shield(asyncio.gather(*(body.abort() for body in bodies), return_exceptions=True))
        raise
    finally:
        _turn_bodies.reset(token)
