"""A streamable HTTP MCP server (the test server as its own process on 127.0.0.1): its tools in
a turn, the entry's headers on its requests, and a server that goes away and comes back."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fake_provider import text, tools
from tests.servers import free_port
from tests.tools.mcp.conftest import SERVER_SCRIPT, server_of
from tools.mcp.config import HttpEntry

pytestmark = pytest.mark.django_db(transaction=True)


class HttpMcpServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/mcp"
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER_SCRIPT), "http", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url, timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the HTTP MCP server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def http_server() -> Iterator[HttpMcpServer]:
    server = HttpMcpServer(free_port())
    yield server
    server.stop()


async def test_a_streamable_http_server_serves_a_turn_with_its_headers(ws, provider, mcp, http_server):
    entry = HttpEntry(url=http_server.url, headers={"X-Team-Token": "team-secret"})
    with mcp(web=entry):
        provider.script(tools(("header", {"name": "X-Team-Token"}), ("server_pid", {})), text("Done."))
        events = await ws.turn("over http")
    results = [e for e in events if e["type"] == "tool_result"]
    assert [(r["tool_name"], r["ok"]) for r in results] == [("header", True), ("server_pid", True)]
    assert results[0]["result"] == "team-secret"
    assert int(results[1]["result"]) == http_server.process.pid
    assert events[-1]["finish_reason"] == "stop"


async def test_an_http_server_that_went_away_is_a_failed_result_then_reconnected(ws, provider, mcp):
    port = free_port()
    first = HttpMcpServer(port)
    with mcp(timeout=5, web=HttpEntry(url=first.url)):
        provider.script(tools(("server_pid", {})), text("Up."))
        await ws.turn("pid?")
        first.stop()
        provider.script(tools(("server_pid", {})), text("Down."))
        down = await ws.turn("pid now?")
        second = HttpMcpServer(port)
        try:
            # A failed server is started again by the next call after its backoff (1 s): a call
            # made before then is refused at once, by design, so the test waits the backoff out.
            deadline = time.monotonic() + 15
            while server_of("web").retry_in() > 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            provider.script(tools(("server_pid", {})), text("Back."))
            back = await ws.turn("and now?")
        finally:
            second.stop()
        state = server_of("web").state
    failed = next(e for e in down if e["type"] == "tool_result")
    assert failed["ok"] is False and "web" in failed["result"]
    assert down[-1]["finish_reason"] == "stop"
    result = next(e for e in back if e["type"] == "tool_result")
    assert result["ok"] is True and int(result["result"]) == second.process.pid
    assert state == "up"


async def test_a_server_that_hangs_at_start_stalls_only_the_first_turn(ws, provider, mcp, async_client, settings):
    settings.MCP_START_TIMEOUT = 1
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/mcp"
        with mcp(silent=HttpEntry(url=url)):
            started = time.monotonic()
            first = await ws.turn("hello")
            first_took = time.monotonic() - started
            started = time.monotonic()
            second = await ws.turn("again")
            second_took = time.monotonic() - started
            health = (await async_client.get("/health")).json()
    assert first[-1]["finish_reason"] == second[-1]["finish_reason"] == "stop"
    assert 1 <= first_took and second_took < 1
    assert health["status"] == "healthy"
    assert "did not start within 1 seconds" in health["services"]["mcp"]["servers"]["silent"]["error"]
