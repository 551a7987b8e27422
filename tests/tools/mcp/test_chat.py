"""MCP tools in chat turns over the WebSocket: a stdio test server's tools run beside the
built-in ones, stream as tool_call / tool_result pairs, and every failure is a result."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from asgiref.sync import sync_to_async
from django.test import Client, override_settings

from tests.fake_provider import text, tools
from tests.tools.mcp.conftest import server_of, stdio_entry
from tools.mcp.config import StdioEntry
from tools.mcp.server import State

pytestmark = pytest.mark.django_db(transaction=True)


def tool_outputs(provider, request_index: int) -> list[str]:
    return [m["content"] for m in provider.requests[request_index].body["messages"] if m["role"] == "tool"]


def pairs(events: list[dict]) -> list[tuple[str, str, bool | None]]:
    return [(e["type"], e["tool_name"], e.get("ok")) for e in events if e["type"] in ("tool_call", "tool_result")]


async def test_a_tool_runs_in_a_turn_with_its_entry_env_and_not_the_backend_keys(ws, provider, mcp, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-backend-secret")
    with mcp(test=stdio_entry(GREETING="hello from the entry")):
        provider.script(
            tools(("echo_env", {"key": "GREETING"}), ("echo_env", {"key": "OPENAI_API_KEY"})), text("Done.")
        )
        events = await ws.turn("what does the server see?")
    assert pairs(events) == [
        ("tool_call", "echo_env", None),
        ("tool_result", "echo_env", True),
        ("tool_call", "echo_env", None),
        ("tool_result", "echo_env", True),
    ]
    calls = [e for e in events if e["type"] == "tool_call"]
    results = [e for e in events if e["type"] == "tool_result"]
    assert [r["call_id"] for r in results] == [c["call_id"] for c in calls]
    assert calls[0]["arguments"] == {"key": "GREETING"}
    assert [r["result"] for r in results] == ["hello from the entry", "<unset>"]
    assert tool_outputs(provider, 1) == ["hello from the entry", "<unset>"]
    offered = {tool["function"]["name"] for tool in provider.requests[0].body["tools"]}
    assert {"ls", "read_file", "echo_env", "server_pid", "slow"} <= offered
    assert events[-1]["finish_reason"] == "stop"


async def test_a_killed_server_is_restarted_by_the_next_call(ws, provider, mcp):
    with mcp(test=stdio_entry()):
        provider.script(tools(("server_pid", {})), text("First."))
        first = await ws.turn("pid?")
        pid = int(next(e["result"] for e in first if e["type"] == "tool_result"))
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):  # its end of the pipe closes: the owner marks it down at once
            if server_of("test").state == State.DOWN:
                break
            await asyncio.sleep(0.05)
        assert server_of("test").state == State.DOWN
        provider.script(tools(("server_pid", {})), text("Second."))
        second = await ws.turn("pid again?")
    result = next(e for e in second if e["type"] == "tool_result")
    assert result["ok"] is True and int(result["result"]) != pid
    assert second[-1]["finish_reason"] == "stop"


async def test_a_call_that_times_out_is_a_failed_result_and_the_turn_goes_on(ws, provider, mcp):
    with mcp(timeout=1, test=stdio_entry()):
        await server_of_ready("test")
        provider.script(tools(("slow", {"seconds": 10})), text("It was too slow."))
        events = await ws.turn("be slow")
        provider.script(tools(("server_pid", {})), text("Still there."))
        after = await ws.turn("still alive?")
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["ok"] is False and "did not answer within 1 seconds" in result["result"]
    assert "did not answer" in tool_outputs(provider, 1)[0]
    assert events[-1]["finish_reason"] == "stop" and events[-2]["content"] == "It was too slow."
    assert next(e for e in after if e["type"] == "tool_result")["ok"] is True


async def server_of_ready(name: str) -> None:
    from tools.offered import mcp_tools_offered

    await mcp_tools_offered()
    assert server_of(name).state == State.UP


async def test_a_tool_error_is_a_failed_result(ws, provider, mcp):
    with mcp(test=stdio_entry()):
        provider.script(tools(("broken", {}), ("echo_env", {"wrong": 1})), text("Both failed."))
        events = await ws.turn("break it")
    results = [e for e in events if e["type"] == "tool_result"]
    assert [r["ok"] for r in results] == [False, False]
    assert results[0]["result"].startswith("Error:")
    assert events[-1]["finish_reason"] == "stop"


async def test_a_broken_entry_shows_in_health_and_chat_still_works(ws, provider, mcp, async_client):
    broken = StdioEntry(command="/nonexistent/mcp-server")
    with mcp(test=stdio_entry(), broken=broken):
        provider.script(tools(("server_pid", {})), text("Fine."))
        events = await ws.turn("works?")
        response = await async_client.get("/health")
    assert next(e for e in events if e["type"] == "tool_result")["ok"] is True
    assert response.status_code == 200 and response.json()["status"] == "healthy"
    service = response.json()["services"]["mcp"]
    assert service["status"] == "degraded" and service["optional"] is True
    assert service["servers"]["test"]["status"] == "up" and service["servers"]["test"]["tools"] >= 5
    assert service["servers"]["broken"]["status"] == "down"
    assert "/nonexistent/mcp-server" in service["servers"]["broken"]["error"]


async def test_a_name_clash_is_prefixed_and_tools_lists_both(ws, provider, mcp, async_client):
    with mcp(test=stdio_entry()):
        provider.script(tools(("test_ls", {}), ("ls", {})), text("Two listings."))
        events = await ws.turn("list")
        listing = (await async_client.get("/tools")).json()
    results = [e for e in events if e["type"] == "tool_result"]
    assert results[0]["tool_name"] == "test_ls" and results[0]["result"] == "mcp ls"
    assert results[1]["tool_name"] == "ls" and results[1]["result"].startswith("{")
    by_name = {tool["name"]: tool for tool in listing["tools"]}
    assert by_name["ls"]["source"] == "builtin"
    assert by_name["test_ls"] == {
        "name": "test_ls",
        "source": "mcp",
        "server": "test",
        "mcp_name": "ls",
        "description": "A tool whose name clashes with the built-in `ls`.",
        "parameters": by_name["test_ls"]["parameters"],
    }
    assert by_name["echo_env"]["parameters"]["required"] == ["key"]
    assert listing["mcp_servers"]["test"]["status"] == "up"
    schema = (await async_client.get("/openapi.json")).json()
    assert "ToolOut" in schema["components"]["schemas"] and "get" in schema["paths"]["/tools"]


async def test_tools_enabled_names_mcp_tools_and_servers(mcp, async_client):
    with mcp(test=stdio_entry()):
        with override_settings(TOOLS_ENABLED=["read_file", "echo_env"]):
            named = [tool["name"] for tool in (await async_client.get("/tools")).json()["tools"]]
        with override_settings(TOOLS_ENABLED=["test"]):
            whole = [tool["name"] for tool in (await async_client.get("/tools")).json()["tools"]]
    assert named == ["read_file", "echo_env"]
    assert "ls" not in whole and {"test_ls", "echo_env", "server_pid"} <= set(whole)


async def test_the_tool_list_is_refreshed_when_the_server_says_it_changed(ws, provider, mcp, async_client):
    with mcp(test=stdio_entry()):
        provider.script(tools(("add_tool", {"name": "fresh_tool"})), text("Added."))
        await ws.turn("add one")
        for _ in range(100):
            if any(tool.name == "fresh_tool" for tool in server_of("test").tools):
                break
            await asyncio.sleep(0.05)
        names = [tool["name"] for tool in (await async_client.get("/tools")).json()["tools"]]
        provider.script(tools(("fresh_tool", {})), text("It works."))
        events = await ws.turn("use it")
    assert "fresh_tool" in names
    assert next(e for e in events if e["type"] == "tool_result")["result"] == "fresh_tool works"


async def test_health_shows_mcp_details_only_to_callers_it_serves(ws, provider, mcp, async_client):
    """Unauthenticated probes from elsewhere see each service's status, never MCP server names,
    transports or error text (which holds command paths)."""
    broken = StdioEntry(command="/nonexistent/mcp-server")
    token = "health-test-token-0123456789-abcdefghijkl"
    with mcp(test=stdio_entry(), broken=broken), override_settings(AUTH_MODE="token", AUTH_TOKEN=token):
        provider.script(text("Fine."))
        await ws.turn("start them")
        # The test client sets the client's address (REMOTE_ADDR); the async one cannot.
        get = sync_to_async(Client().get)
        elsewhere = {"REMOTE_ADDR": "203.0.113.9"}
        stranger = await get("/health", **elsewhere)
        proxied = await get("/health", HTTP_X_FORWARDED_FOR="203.0.113.9")
        wrong = await get("/health", HTTP_AUTHORIZATION="Bearer nope", **elsewhere)
        served = await get("/health", HTTP_AUTHORIZATION=f"Bearer {token}", **elsewhere)
        local = await async_client.get("/health")
    for response in (stranger, proxied, wrong):
        body = response.json()
        assert response.status_code == 200 and body["status"] == "healthy"
        assert body["services"]["mcp"] == {"status": "degraded"}
        assert set(body["services"]["database"]) == {"status", "backend"}
        assert "nonexistent" not in response.content.decode() and "broken" not in response.content.decode()
    for response in (served, local):
        assert "/nonexistent/mcp-server" in response.json()["services"]["mcp"]["servers"]["broken"]["error"]


async def test_a_regenerated_answer_calls_the_tool_again_on_its_own_branch(ws, provider, mcp):
    with mcp(test=stdio_entry(GREETING="hello from the entry")):
        provider.script(tools(("echo_env", {"key": "GREETING"})), text("First."))
        first = await ws.turn("what does the server see?")
        provider.script(tools(("echo_env", {"key": "GREETING"})), text("Again."))
        await ws.send({"type": "regenerate", "message_id": first[-1]["message_id"]})
        again = await ws.until_end()
    assert pairs(again) == [("tool_call", "echo_env", None), ("tool_result", "echo_env", True)]
    assert tool_outputs(provider, 2) == []  # the first answer's call is on another branch
    assert tool_outputs(provider, 3) == ["hello from the entry"]
    assert again[-1]["finish_reason"] == "stop" and again[-1]["message_id"] != first[-1]["message_id"]


async def test_a_servers_name_in_tools_require_approval_gates_its_tools_and_only_them(ws, provider, mcp):
    with mcp(test=stdio_entry(GREETING="hi")), override_settings(TOOLS_REQUIRE_APPROVAL=frozenset({"test"})):
        provider.script(tools(("ls", {}), ("echo_env", {"key": "GREETING"})), text("Done."))
        await ws.send({"message": "look"})
        events = [await ws.receive()]
        while events[-1]["type"] != "tool_approval_request":
            events.append(await ws.receive())
        assert pairs(events) == [
            ("tool_call", "ls", None),
            ("tool_result", "ls", True),
            ("tool_call", "echo_env", None),
        ]
        assert events[-1]["tool_name"] == "echo_env" and events[-1]["arguments"] == {"key": "GREETING"}
        await ws.send({"type": "tool_approval", "approval_id": events[-1]["approval_id"], "approved": True})
        rest = await ws.until_end()
    assert pairs(rest) == [("tool_result", "echo_env", True)]
    assert rest[0]["result"] == "hi" and rest[-1]["finish_reason"] == "stop"
