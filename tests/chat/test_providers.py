"""The same tool-using turn through every provider route, each in its own wire format."""

from __future__ import annotations

import pytest
from django.test import override_settings

from chat.catalog import catalog_get
from chat.providers import model_resolve
from tests.conftest import catalog_file, connect
from tests.fake_provider import text, tools

pytestmark = pytest.mark.django_db(transaction=True)


async def test_openai_routes_are_native_and_others_go_through_litellm(provider):
    catalog = catalog_get()
    assert type(model_resolve(catalog.get("gpt-4o")).model.inner).__name__ == "OpenAIChatCompletionsModel"
    assert type(model_resolve(catalog.get("local-llama")).model.inner).__name__ == "OpenAIChatCompletionsModel"
    assert type(model_resolve(catalog.get("claude-sonnet-4-5")).model.inner).__name__ == "LitellmModel"
    assert type(model_resolve(catalog.get("gemini-2.5-flash")).model.inner).__name__ == "LitellmModel"


async def test_a_chunk_outside_the_openai_schema_still_streams(ws, provider):
    # OpenAI-compatible servers send values of their own (llama.cpp's "eos"); the client's strict
    # fast path rejects such a chunk, and the lenient path must still take it.
    provider.script(text("Hello", " there", finish_reason="eos"))
    events = await ws.turn("hi", model="local-llama")
    assert [(e["type"], e.get("content")) for e in events] == [
        ("stream", "Hello"),
        ("stream", " there"),
        ("stream_end", None),
    ]
    assert events[-1]["finish_reason"] == "stop" and events[-1]["usage"]["output_tokens"] == 7


@pytest.mark.parametrize(
    ("model", "path"),
    [
        ("gpt-4o", "/v1/chat/completions"),
        ("local-llama", "/v1/chat/completions"),
        ("claude-sonnet-4-5", "/v1/messages"),
        ("gemini-2.5-flash", "/models/gemini-2.5-flash:streamGenerateContent?alt=sse"),
    ],
)
async def test_a_tool_turn_through_each_route(ws, provider, workspace, model, path):
    (workspace / "notes.md").write_text("remember the milk")
    provider.script(tools(("read_file", {"path": "notes.md"})), text("You noted: ", "milk."))
    events = await ws.turn("what did I note?", model=model)
    assert [e["type"] for e in events] == [
        "tool_call",
        "tool_result",
        "final_response_start",
        "final_stream",
        "final_stream",
        "stream_end",
    ]
    assert events[0]["arguments"] == {"path": "notes.md"}
    assert events[1]["result"] == "remember the milk" and events[1]["ok"] is True
    assert events[-1]["usage"]["requests"] == 2
    assert [r.path for r in provider.requests] == [path, path]
    second = provider.requests[1]
    if model.startswith("claude"):
        assert second.headers["x-api-key"] == "sk-ant-test-key"
        result = second.body["messages"][-1]["content"][0]
        assert result["type"] == "tool_result" and result["content"] == "remember the milk"
    elif model.startswith("gemini"):
        assert "AIza-test-google-key" in second.headers.get("x-goog-api-key", "") + second.path
        response = second.body["contents"][-1]["parts"][0]["function_response"]
        assert response["name"] == "read_file" and response["response"]["content"] == "remember the milk"
    else:
        assert second.body["messages"][-1] == {
            "role": "tool",
            "tool_call_id": events[0]["call_id"],
            "content": "remember the milk",
        }
        key = "Bearer sk-test-openai-key" if model == "gpt-4o" else "Bearer not-needed"
        assert second.headers["authorization"] == key


async def test_an_openai_compatible_server_works_with_no_key_at_all(fake, tmp_path):
    """The docs/local-model.md example: an Ollama-style entry, no provider key anywhere."""
    models = {
        "llama3.2": {"provider": "openai_compatible", "name": "Llama", "maxTokens": 8192, "base_url": f"{fake.url}/v1"}
    }
    with override_settings(
        MODELS_FILE=catalog_file(tmp_path, models, "llama3.2"),
        OPENAI_API_KEY=None,
        ANTHROPIC_API_KEY=None,
        GOOGLE_API_KEY=None,
        OPENAI_BASE_URL=None,
        PROVIDER_RETRIES=0,
    ):
        fake.script(text("Hi", "!"))
        ws = await connect("keyless")
        events = await ws.turn("hello")
        await ws.communicator.disconnect()
    assert [e["type"] for e in events] == ["stream", "stream", "stream_end"]
    assert events[-1]["finish_reason"] == "stop" and events[-1]["model"] == "llama3.2"
    assert fake.requests[0].body["model"] == "llama3.2"
    # The client needs some key to start; the server is sent a placeholder, never a real key.
    assert fake.requests[0].headers["authorization"] == "Bearer not-needed"
