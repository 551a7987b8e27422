"""Catalog model → Agents SDK model (one resolver), and provider failures → contract errors."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import httpx
import litellm
import openai
from agents import Model, ModelSettings
from agents.exceptions import MaxTurnsExceeded
from agents.extensions.models.litellm_model import LitellmModel
from django.conf import settings

from chat.catalog import CatalogModel, provider_base_url

logger = logging.getLogger(__name__)
# The OpenAI client refuses to start without a key; local servers ignore it.
KEYLESS_PLACEHOLDER = "not-needed"


def model_resolve(model: CatalogModel) -> Model:
    return LitellmModel(
        model=model.litellm_model,
        base_url=provider_base_url(model),
        api_key=model.api_key or KEYLESS_PLACEHOLDER,
    )


def model_settings() -> ModelSettings:
    return ModelSettings(
        # Without it, streamed usage is reported as 0.
        include_usage=True,
        # The OpenAI client under LiteLLM retries twice by default, even mid-stream; retries
        # are ours to decide (chat.runs retries only before anything reached the client).
        extra_args={"timeout": settings.PROVIDER_TIMEOUT, "max_retries": 0},
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


def failure_classify(exc: BaseException) -> TurnFailure:
    """Map an exception from a run to the contract's error code and a sentence for people."""
    if isinstance(exc, MaxTurnsExceeded):
        return TurnFailure(
            code="max_turns_exceeded",
            message=f"The assistant reached the limit of {settings.AGENT_MAX_TURNS} steps for one reply.",
            retryable=False,
        )
    if isinstance(exc, litellm.ContextWindowExceededError):
        return TurnFailure(
            code="context_length_exceeded",
            message="The conversation no longer fits the model's context window; start a new conversation.",
            retryable=False,
        )
    if isinstance(exc, litellm.AuthenticationError | openai.AuthenticationError | openai.PermissionDeniedError):
        return TurnFailure(code="provider_auth", message="The provider refused the API key.", retryable=False)
    if isinstance(exc, litellm.RateLimitError | openai.RateLimitError):
        after = _retry_after(exc)
        when = f" Try again in {after:g} seconds." if after is not None else " Try again shortly."
        return TurnFailure(
            code="provider_rate_limited",
            message="The provider is rate limiting requests." + when,
            retryable=True,
            retry_after=after,
        )
    if isinstance(exc, litellm.Timeout | openai.APITimeoutError | httpx.TimeoutException | asyncio.TimeoutError):
        return TurnFailure(code="provider_timeout", message="The provider did not answer in time.", retryable=True)
    if isinstance(
        exc,
        litellm.ServiceUnavailableError
        | litellm.InternalServerError
        | litellm.APIConnectionError
        | litellm.BadGatewayError
        | openai.InternalServerError
        | openai.APIConnectionError
        | httpx.TransportError,
    ):
        return TurnFailure(
            code="provider_unavailable",
            message="The provider failed or the connection to it broke; try again.",
            retryable=True,
        )
    if isinstance(exc, litellm.APIError | openai.APIStatusError) and (getattr(exc, "status_code", 0) or 0) >= 500:
        return TurnFailure(code="provider_unavailable", message="The provider failed; try again.", retryable=True)
    logger.error("turn failed", exc_info=exc, extra={"event": "turn_internal_error"})
    return TurnFailure(code="internal_error", message="Something went wrong on the server.", retryable=False)
