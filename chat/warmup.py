"""Warm the request path in the background once the server has started (`dreamytin.startup`).

Without it the first turn after start pays ~0.6 s: the OpenAI client imports its resource
modules (and builds their pydantic models) on first use, and the Agents SDK builds its own on
its first run. One complete turn on the real SDK model, whose HTTP is answered in process
(`httpx.MockTransport`: no network), pays that instead. LiteLLM (seconds to import) is
imported too when a usable model goes through it; OpenAI models never need it.

When the local model is the default (no provider key), a second warm-up loads it and reads
the system prompt and tools that begin every turn into its cache (one reply of one token, on a
thread of its own): the first reply then starts within a second instead of after reading them
(9 s on the 2-core VM, docs/local-model.md).

Then the collector is set for a long-running server (`chat.gc_tuning`). `/health` says whether the
warm-up is done.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from enum import Enum

import httpx
from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, RunConfig, Runner, set_tracing_disabled

from chat.catalog import catalog_get
from chat.gc_tuning import gc_settle
from chat.local_model import LOCAL_MODEL_ID
from chat.providers import litellm_setup, through_litellm
from chat.turn.agent import agent_build
from chat.turn.mapping import EventMapper
from chat.wire import TurnFrames
from observability.tracing import sdk_tracing_wanted
from tools.adapter import function_tool
from tools.registry import registry

logger = logging.getLogger(__name__)


class WarmupState(Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


_state = WarmupState.PENDING
_state_lock = threading.Lock()


def warmup_state() -> WarmupState:
    return _state


def _completion_stream() -> bytes:
    base = {"id": "warmup", "object": "chat.completion.chunk", "created": 0, "model": "warmup"}
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "warm"}}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**base, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}},
    ]
    return "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks).encode() + b"data: [DONE]\n\n"


async def _warm_turn() -> None:
    from chat.openai_client import openai_client_class  # its import is part of what is warmed up

    body = _completion_stream()
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
    )
    async with httpx.AsyncClient(transport=transport) as http_client:
        client = openai_client_class()(
            api_key="warmup", base_url="http://warmup.invalid/v1", max_retries=0, http_client=http_client
        )
        agent = Agent(
            name="warmup",
            instructions="warm up",
            model=OpenAIChatCompletionsModel(model="warmup", openai_client=client),
            model_settings=ModelSettings(include_usage=True),
            tools=[function_tool(tool) for tool in registry.enabled()],
        )
        result = Runner.run_streamed(agent, "warm up", run_config=RunConfig(tracing_disabled=True))
        mapper = EventMapper()
        frames = TurnFrames(model="warmup", conversation_id="warmup", message_id="warmup")
        async for event in result.stream_events():
            for mapped in mapper.feed(event):
                frames.encode(mapped)


def warmup() -> None:
    """Warm up now, on this thread, with an event loop of its own (never the server's: the
    warm-up must not hold it). A failure is logged, never fatal."""
    global _state
    started = time.perf_counter()
    with _state_lock:
        _state = WarmupState.RUNNING
    try:
        # The SDK exports traces to OpenAI by default: off unless the operator asks for it, or
        # wants them as OTel spans (observability.tracing, which then replaces that exporter).
        # (Every turn also says so in its RunConfig; building the trace provider costs ~0.2 s.)
        set_tracing_disabled(not sdk_tracing_wanted())
        asyncio.run(_warm_turn())
        models = catalog_get().models.values()
        for model in models:
            model.price  # noqa: B018 - looks the model up in LiteLLM's price map, once
        if any(model.usable and through_litellm(model) for model in models):
            litellm_setup()
        gc_settle()
    except Exception:
        ended = WarmupState.FAILED
        logger.warning("warm-up failed; the first turn will be slower", exc_info=True)
    else:
        ended = WarmupState.DONE
        logger.info("warm-up done in %.2fs", time.perf_counter() - started, extra={"event": "warmup"})
        if catalog_get().usable_default() == LOCAL_MODEL_ID:
            # After the first warm-up: the lazy imports of the SDK's first run are done by then.
            threading.Thread(target=_run_local, name="local-model-warmup", daemon=True).start()
    with _state_lock:
        _state = ended


def warmup_start() -> None:
    """Warm up in the background, once per process."""
    global _state
    with _state_lock:
        if _state is not WarmupState.PENDING:
            return
        _state = WarmupState.RUNNING
    threading.Thread(target=warmup, name="warmup", daemon=True).start()


async def _warm_local_model() -> None:
    # The server's own agent: the same instructions and tools, so the same prompt, as every turn.
    agent = agent_build(catalog_get().models[LOCAL_MODEL_ID])
    agent = agent.clone(model_settings=agent.model_settings.resolve(ModelSettings(max_tokens=1)))
    result = Runner.run_streamed(agent, "hello", run_config=RunConfig(tracing_disabled=True))
    async for _ in result.stream_events():
        pass


def _run_local() -> None:
    started = time.perf_counter()
    try:
        asyncio.run(_warm_local_model())
    except Exception:
        logger.warning("local model warm-up failed; the first local turn will be slower", exc_info=True)
        return
    logger.info(
        "local model warm-up done in %.2fs", time.perf_counter() - started, extra={"event": "warmup_local_model"}
    )
