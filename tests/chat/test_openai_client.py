"""The fast path's OpenAI client builds the same chunks as the stock client, faster, and
FAST_PATHS chooses between them."""

from __future__ import annotations

import httpx
import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionChunk

from chat.openai_client import LeanOpenAI, openai_client_build

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


@pytest.mark.parametrize("on", [True, False])
def test_fast_paths_switch_the_client(settings, on):
    settings.FAST_PATHS = on
    client = openai_client_build(base_url="http://provider.invalid/v1", api_key="k", timeout=10)
    assert (type(client) is LeanOpenAI) is on and isinstance(client, AsyncOpenAI)
