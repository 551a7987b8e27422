"""The fast path's OpenAI client sends the same requests and builds the same chunks as the
stock client, faster."""

from __future__ import annotations

import httpx
import pytest
from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, RunConfig, Runner
from openai import NOT_GIVEN, AsyncOpenAI, omit
from openai.types.chat import ChatCompletionChunk

from chat.fast_paths.openai_client import LeanOpenAI
from chat.openai_client import openai_client_build
from tests import fake_provider
from tools.adapter import function_tool
from tools.registry import registry

BASE = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
CHUNKS = [
    {**BASE, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None}]},
    {
        **BASE,
        "choices": [
            {
                "index": 0,
                "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "ls"}}]},
            }
        ],
    },
    {**BASE, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}},
    {**BASE, "choices": [{"index": 0, "delta": {"reasoning_content": "hm"}, "finish_reason": "eos"}]},  # not OpenAI's
]


@pytest.mark.parametrize("data", CHUNKS)
def test_a_chunk_is_built_as_the_stock_client_builds_it(data):
    response = httpx.Response(200, request=httpx.Request("POST", "http://provider/v1/chat/completions"))
    kwargs = {"data": data, "cast_to": ChatCompletionChunk, "response": response}
    stock = AsyncOpenAI(api_key="k")._process_response_data(**kwargs)
    ours = LeanOpenAI(api_key="k")._process_response_data(**kwargs)
    assert type(ours) is ChatCompletionChunk and ours == stock
    assert ours.model_dump() == stock.model_dump()


HISTORY = [
    {"role": "user", "content": "What is in notes?"},
    {"type": "function_call", "call_id": "call_1", "name": "ls", "arguments": '{"path": "notes"}'},
    {"type": "function_call_output", "call_id": "call_1", "output": '{"entries": ["todo.md"]}'},
    {
        "type": "message",
        "role": "assistant",
        "id": "msg_1",
        "status": "completed",
        "content": [{"type": "output_text", "text": "A to-do list. ✓", "annotations": []}],
    },
    {"role": "user", "content": [{"type": "input_text", "text": "Read it"}]},
]


@pytest.mark.parametrize("with_tools", [True, False])
async def test_a_request_reaches_the_provider_as_the_stock_client_sends_it(fake, with_tools):
    fake.script(fake_provider.text("ok"), fake_provider.text("ok"))
    settings = ModelSettings(include_usage=True, temperature=0.3, extra_body={"user": "u1"}, metadata={"k": "v"})
    tools = [function_tool(tool) for tool in registry.enabled()] if with_tools else []
    stock = AsyncOpenAI(base_url=f"{fake.url}/v1", api_key="k", max_retries=0)
    ours = openai_client_build(base_url=f"{fake.url}/v1", api_key="k", timeout=10)
    for client in (stock, ours):
        model = OpenAIChatCompletionsModel(model="gpt-4o", openai_client=client)
        agent = Agent(name="a", instructions="Be brief.", model=model, model_settings=settings, tools=tools)
        result = Runner.run_streamed(agent, HISTORY, run_config=RunConfig(tracing_disabled=True))
        async for _ in result.stream_events():
            pass
    sent_by_stock, sent_by_ours = (request.body for request in fake.requests)
    assert sent_by_ours == sent_by_stock
    assert len(sent_by_ours["messages"]) == 6 and ("tools" in sent_by_ours) is with_tools


async def test_a_request_without_tools_may_say_so_either_way(fake):
    fake.script(fake_provider.text("ok"), fake_provider.text("ok"))
    client = openai_client_build(base_url=f"{fake.url}/v1", api_key="k", timeout=10)
    for absent in (omit, NOT_GIVEN):
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], tools=absent, stream=True
        )
        async for _ in stream:
            pass
    assert [request.body for request in fake.requests] == [
        {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    ] * 2


@pytest.mark.parametrize("on", [True, False])
def test_fast_paths_switch_the_client(settings, on):
    settings.FAST_PATHS = on
    client = openai_client_build(base_url="http://provider.invalid/v1", api_key="k", timeout=10)
    assert (type(client) is LeanOpenAI) is on and isinstance(client, AsyncOpenAI)
