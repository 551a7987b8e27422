"""The OpenAI clients the native route and the local model stream with (and the benchmark's
library baseline): with FAST_PATHS on, the fast path's `LeanOpenAI` (`chat.fast_paths`); off,
the stock client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
from django.conf import settings
from openai import AsyncOpenAI, DefaultAsyncHttpxClient

from chat.fast_paths.openai_client import LeanOpenAI


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
