"""Process-wide set-up of the Agents SDK and LiteLLM, done once in `ChatConfig.ready()`."""

from __future__ import annotations

import litellm
from agents import set_tracing_disabled
from django.conf import settings


def runtime_configure() -> None:
    # The SDK exports traces to OpenAI by default: off unless the operator asks for it.
    set_tracing_disabled(not settings.AGENTS_TRACING)
    # We retry ourselves, and only before the first token reached the client (chat.runs);
    # LiteLLM's own retries would re-send a request whose stream already reached the client.
    litellm.num_retries = 0
    litellm.suppress_debug_info = True
    litellm.telemetry = False
    # Providers reject parameters they do not know (e.g. stream_options on some routes).
    litellm.drop_params = True
