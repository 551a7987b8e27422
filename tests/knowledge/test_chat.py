"""The knowledge base in a real chat turn: the model calls `search_knowledge` through the
WebSocket, reads passages with their `path:line`, and is told to cite them."""

from __future__ import annotations

import pytest
from django.test import override_settings

from tests.fake_provider import text, tools

pytestmark = pytest.mark.django_db(transaction=True)


def offered_tools(request) -> list[str]:
    return [tool["function"]["name"] for tool in request.body.get("tools", [])]


async def test_the_model_searches_the_notes_and_is_told_to_cite(ws, provider, notes):
    (notes / "people").mkdir()
    (notes / "people" / "anna.md").write_text("# Anna\n\n## Birds\n\nHer heron Alfonso nests by the mill pond.\n")
    provider.script(
        tools(("search_knowledge", {"query": "heron Alfonso nest"})),
        text("By the mill pond (people/anna.md:5)."),
    )
    events = await ws.turn("Where does Alfonso nest?")
    call, result = events[0], events[1]
    assert call["type"] == "tool_call" and call["tool_name"] == "search_knowledge"
    assert result["type"] == "tool_result" and result["ok"] is True
    assert "[1] people/anna.md:5 (Anna › Birds)" in result["result"]
    assert events[-1]["finish_reason"] == "stop"
    first, second = provider.requests
    assert "search_knowledge" in offered_tools(first)
    assert "cite it as `path:line`" in first.body["messages"][0]["content"]
    tool_message = next(m for m in second.body["messages"] if m["role"] == "tool")
    assert "Her heron Alfonso nests by the mill pond." in tool_message["content"]


async def test_without_a_knowledge_folder_the_tool_and_its_prompt_are_absent(ws, provider):
    provider.script(text("hello"))
    with override_settings(KNOWLEDGE_DIRS=[]):
        await ws.turn("hi")
    (request,) = provider.requests
    assert "search_knowledge" not in offered_tools(request) and "ls" in offered_tools(request)
    assert "path:line" not in request.body["messages"][0]["content"]


async def test_a_regenerated_answer_searches_again_without_the_first_answers_passages(ws, provider, notes):
    (notes / "anna.md").write_text("# Anna\n\nHer heron Alfonso nests by the mill pond.\n")
    provider.script(
        tools(("search_knowledge", {"query": "heron Alfonso"})),
        text("By the mill pond (anna.md:3)."),
        tools(("search_knowledge", {"query": "Alfonso nest"})),
        text("At the mill pond (anna.md:3)."),
    )
    first = await ws.turn("Where does Alfonso nest?")
    await ws.send({"type": "regenerate", "message_id": first[-1]["message_id"]})
    again = await ws.until_end()
    assert [e["type"] for e in again][:2] == ["tool_call", "tool_result"] and again[-1]["finish_reason"] == "stop"
    assert "mill pond" in again[1]["result"]
    fresh, answered = provider.requests[2], provider.requests[3]
    assert [m["role"] for m in fresh.body["messages"]] == ["system", "user"]  # the sibling's search is not sent
    assert [m["content"] for m in answered.body["messages"] if m["role"] == "tool"] == [again[1]["result"]]
