"""The adapter: validation, failures and time-outs come back to the model as tool errors,
directly and through a real Agents SDK turn."""

from __future__ import annotations

import asyncio

import pytest
from django.test import override_settings

from tests.fake_provider import text, tools
from tools.adapter import function_tool, tool_invoke
from tools.base import BaseTool, ToolArgs, ToolResult
from tools.registry import registry


class BoomArgs(ToolArgs):
    pass


class Boom(BaseTool[BoomArgs]):
    name = "boom"
    description = "Always raises."
    args_model = BoomArgs

    async def execute(self, args: BoomArgs) -> ToolResult:
        raise RuntimeError("internal detail /srv/secret")


class Sleepy(BaseTool[BoomArgs]):
    name = "sleepy"
    description = "Sleeps forever."
    args_model = BoomArgs

    async def execute(self, args: BoomArgs) -> ToolResult:
        await asyncio.sleep(60)
        return ToolResult.success("never")


def test_schema_comes_from_the_argument_model():
    tool = function_tool(registry.get("read_file"))
    schema = tool.params_json_schema
    assert schema["type"] == "object" and schema["required"] == ["path"]
    assert set(schema["properties"]) == {"path", "encoding", "lines", "offset"}
    assert schema["additionalProperties"] is False
    assert "workspace" in tool.description


async def test_invalid_arguments_are_a_tool_error():
    result = await tool_invoke(registry.get("read_file"), '{"path": 5, "extra": 1}')
    assert not result.ok and "Invalid arguments" in result.content and "path" in result.content
    assert not (await tool_invoke(registry.get("read_file"), "{not json")).ok


async def test_an_exception_is_a_tool_error_without_its_details():
    result = await tool_invoke(Boom(), "{}")
    assert not result.ok and "failed unexpectedly" in result.content and "/srv/secret" not in result.content


async def test_a_time_out_is_a_tool_error():
    with override_settings(TOOLS_TIMEOUT=0.1):
        result = await tool_invoke(Sleepy(), "{}")
    assert not result.ok and "0.1 seconds" in result.content


@pytest.mark.django_db(transaction=True)
async def test_through_the_sdk_a_failing_tool_does_not_fail_the_turn(ws, provider):
    registry.register(Boom)
    try:
        provider.script(tools(("boom", {}), ("read_file", {"path": 7})), text("Sorry, that failed."))
        events = await ws.turn("try it")
    finally:
        registry.unregister("boom")
    results = [e for e in events if e["type"] == "tool_result"]
    assert [r["ok"] for r in results] == [False, False]
    assert events[-1]["finish_reason"] == "stop"
    outputs = [m for m in provider.requests[1].body["messages"] if m["role"] == "tool"]
    assert "failed unexpectedly" in outputs[0]["content"] and "Invalid arguments" in outputs[1]["content"]
