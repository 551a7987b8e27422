"""Catalog model → Agents SDK model (one resolver), and provider failures → contract errors."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType

import httpx
import openai
from agents import Model, ModelSettings, OpenAIChatCompletionsModel
from agents.exceptions import MaxTurnsExceeded
from django.conf import settings
from openai import AsyncOpenAI

from chat.catalog import CatalogModel, provider_base_url
from chat.local_chat import LocalTransport
from chat.local_model import LocalEngine, local_engine
from chat.provider_bodies import track_litellm_responses, track_response
from chat.provider_deadline import DeadlineModel
from chat.runtime import runtime

# The OpenAI client refuses to start without a key; local servers ignore it.
KEYLESS_PLACEHOLDER = "not-needed"


# OpenAI and OpenAI-compatible endpoints take the SDK's native Chat Completions model: LiteLLM
# costs about three times the CPU per streamed chunk (bench/). Anthropic and Google go through
# LiteLLM.
NATIVE_PROVIDERS = ("openai", "openai_compatible")


def through_litellm(model: CatalogModel) -> bool:
    """Whether a model's turns go through LiteLLM: the local model, too, takes the OpenAI client."""
    return model.provider not in NATIVE_PROVIDERS and model.provider != "local"


@dataclass(frozen=True, kw_only=True)
class ResolvedModel:
    model: Model
    settings: ModelSettings


def _openai_client(base_url: str | None, api_key: str, timeout: float) -> AsyncOpenAI:
    # One client (and connection pool) per endpoint and key, shared by every turn; a pool
    # belongs to the event loop it was made in, so the runtime keeps them per loop.
    clients = runtime().openai_clients.setdefault(asyncio.get_running_loop(), {})
    key = (base_url, api_key, timeout)
    if key not in clients:
        # Imported on first use: the client's resource modules take about a second to import,
        # which the server's start (and a deployment with no OpenAI model) need not pay.
        from chat.openai_client import openai_client_build

        clients[key] = openai_client_build(
            base_url=base_url, api_key=api_key, timeout=timeout, response_hook=track_response
        )
    return clients[key]


@lru_cache(maxsize=1)
def litellm_setup() -> ModuleType:
    """LiteLLM, imported when a model that needs it is first used: its import alone takes
    seconds, and OpenAI models never need it. Set up once for the process."""
    import litellm

    # We retry ourselves, and only before the first token reached the client (chat.turn.runner);
    # LiteLLM's own retries would re-send a request whose stream already reached the client.
    litellm.num_retries = 0
    litellm.suppress_debug_info = True
    litellm.telemetry = False
    # Providers reject parameters they do not know (e.g. stream_options on some routes).
    litellm.drop_params = True
    track_litellm_responses(litellm)
    return litellm


def _local_client(engine: LocalEngine) -> AsyncOpenAI:
    # One client per local engine: its transport answers in process, so no pool is bound to a loop.
    local_clients = runtime().local_clients
    if engine not in local_clients:
        from chat.openai_client import openai_client_class  # as in `_openai_client`: on first use

        local_clients[engine] = openai_client_class()(
            api_key=KEYLESS_PLACEHOLDER,
            base_url="http://local-model.invalid/v1",  # never resolved: the transport answers
            max_retries=0,
            http_client=httpx.AsyncClient(transport=LocalTransport(engine)),
        )
    return local_clients[engine]


def _engine(model: CatalogModel) -> LocalEngine:
    engine = local_engine()
    if engine is None:  # the catalog lists the local model only while its engine can exist
        raise RuntimeError(f"model {model.id!r} is local but no local model is configured")
    return engine


def provider_turn_slot(
    model: CatalogModel, on_wait: Callable[[int], Awaitable[None]]
) -> AbstractAsyncContextManager[None]:
    """The local model runs one turn at a time per process (the others wait, and are told);
    a hosted provider takes every turn at once."""
    if model.provider == "local":
        return _engine(model).turn_slot(on_wait)
    return nullcontext()


def model_resolve(model: CatalogModel) -> ResolvedModel:
    """The one place a catalog model becomes an Agents SDK model."""
    if model.provider == "local":
        return ResolvedModel(
            model=OpenAIChatCompletionsModel(model=model.provider_model, openai_client=_local_client(_engine(model))),
            settings=ModelSettings(include_usage=True),
        )
    api_key = model.api_key or KEYLESS_PLACEHOLDER
    base_url = provider_base_url(model)
    if not through_litellm(model):
        client = _openai_client(base_url, api_key, settings.PROVIDER_TIMEOUT)
        return ResolvedModel(
            model=DeadlineModel(
                OpenAIChatCompletionsModel(model=model.provider_model, openai_client=client), settings.PROVIDER_TIMEOUT
            ),
            # Without include_usage, streamed usage is reported as 0.
            settings=ModelSettings(include_usage=True),
        )
    litellm_setup()
    from agents.extensions.models.litellm_model import LitellmModel

    return ResolvedModel(
        # LiteLLM does not keep the timeout on every route (chat.provider_deadline): we do.
        model=DeadlineModel(
            LitellmModel(model=model.litellm_model, base_url=base_url, api_key=api_key),
            settings.PROVIDER_TIMEOUT,
            check_whole=True,
        ),
        settings=ModelSettings(
            include_usage=True,
            # The OpenAI client under LiteLLM retries twice by default, even mid-stream.
            extra_args={"timeout": settings.PROVIDER_TIMEOUT, "max_retries": 0},
        ),
    )


@dataclass(frozen=True, kw_only=True)
class TurnFailure:
    code: str
    message: str
    retryable: bool
    retry_after: float | None = None


def _retry_after(exc: BaseException) -> float | None:
    headers = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
    if not headers:
        return None
    try:
        return float(headers.get("retry-after"))
    except (TypeError, ValueError):
        return None


def _litellm_errors(*names: str) -> tuple[type[BaseException], ...]:
    """LiteLLM's exception types of these names; none while LiteLLM is not imported, since no
    exception of its can exist before."""
    litellm = sys.modules.get("litellm")
    # While another thread imports LiteLLM, its module is there before its names are.
    found = (getattr(litellm, name, None) for name in names)
    return tuple(error for error in found if error is not None)


def failure_classify(exc: BaseException) -> TurnFailure:
    """Map an exception from a run to the contract's error code and a sentence for people.
    Pure: the caller logs what it decides to end the turn with."""
    if isinstance(exc, MaxTurnsExceeded):
        return TurnFailure(
            code="max_turns_exceeded",
            message=f"The assistant reached the limit of {settings.AGENT_MAX_TURNS} steps for one reply.",
            retryable=False,
        )
    if isinstance(exc, _litellm_errors("ContextWindowExceededError")) or _openai_context_exceeded(exc):
        return TurnFailure(
            code="context_length_exceeded",
            message="The conversation no longer fits the model's context window; start a new conversation.",
            retryable=False,
        )
    if isinstance(
        exc, (openai.AuthenticationError, openai.PermissionDeniedError, *_litellm_errors("AuthenticationError"))
    ):
        return TurnFailure(code="provider_auth", message="The provider refused the API key.", retryable=False)
    if isinstance(exc, (openai.RateLimitError, *_litellm_errors("RateLimitError"))):
        after = _retry_after(exc)
        when = f" Try again in {after:g} seconds." if after is not None else " Try again shortly."
        return TurnFailure(
            code="provider_rate_limited",
            message="The provider is rate limiting requests." + when,
            retryable=True,
            retry_after=after,
        )
    timeouts = (openai.APITimeoutError, httpx.TimeoutException, asyncio.TimeoutError, *_litellm_errors("Timeout"))
    if isinstance(exc, timeouts):
        return TurnFailure(code="provider_timeout", message="The provider did not answer in time.", retryable=True)
    unavailable = (
        openai.InternalServerError,
        openai.APIConnectionError,
        httpx.TransportError,
        *_litellm_errors("ServiceUnavailableError", "InternalServerError", "APIConnectionError", "BadGatewayError"),
    )
    if isinstance(exc, unavailable):
        return TurnFailure(
            code="provider_unavailable",
            message="The provider failed or the connection to it broke; try again.",
            retryable=True,
        )
    if isinstance(exc, json.JSONDecodeError):  # a malformed event in the provider's stream
        return TurnFailure(
            code="provider_unavailable", message="The provider sent a malformed response; try again.", retryable=True
        )
    server_errors = (openai.APIStatusError, *_litellm_errors("APIError"))
    if isinstance(exc, server_errors) and (getattr(exc, "status_code", 0) or 0) >= 500:
        return TurnFailure(code="provider_unavailable", message="The provider failed; try again.", retryable=True)
    return TurnFailure(code="internal_error", message="Something went wrong on the server.", retryable=False)


def _openai_context_exceeded(exc: BaseException) -> bool:
    if not isinstance(exc, openai.BadRequestError):
        return False
    return getattr(exc, "code", None) == "context_length_exceeded" or "maximum context length" in str(exc)
