"""The native route's OpenAI client builds the same chunks as the stock client, faster."""

from __future__ import annotations

import inspect

import httpx
import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionChunk

from chat.openai_client import ChunkValidatingOpenAI

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
    ours = ChunkValidatingOpenAI(api_key="k")._process_response_data(**kwargs)
    assert type(ours) is ChatCompletionChunk and ours == stock
    assert ours.model_dump() == stock.model_dump()


def test_the_client_hook_it_overrides_still_exists():
    # The override is a private hook of the pinned openai release: if an upgrade renamed it,
    # streams would silently take the slow path again.
    parameters = inspect.signature(AsyncOpenAI._process_response_data).parameters
    assert list(parameters) == ["self", "data", "cast_to", "response"]
