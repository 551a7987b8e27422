"""MCP servers for the tests: entries for the test server, set as the process's servers, and
closed after each test (their owner tasks live on the session's one loop)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.test import override_settings

from tools.mcp.config import McpEntry, StdioEntry
from tools.mcp.toolset import mcp_servers, mcp_shutdown

SERVER_SCRIPT = Path(__file__).with_name("mcp_server.py")


def stdio_entry(**env: str) -> StdioEntry:
    return StdioEntry(command=sys.executable, args=(str(SERVER_SCRIPT),), env=env)


@pytest.fixture
async def mcp() -> AsyncIterator[Callable[..., object]]:
    """`with mcp(name=entry, ..., MCP_TIMEOUT=...)`: those servers for the block's duration."""

    @contextmanager
    def configure(timeout: float = 30, **entries: McpEntry) -> Iterator[None]:
        with override_settings(MCP_SERVERS=entries, MCP_TIMEOUT=timeout):
            yield

    yield configure
    await mcp_shutdown()


def server_of(name: str):
    return mcp_servers().servers[name]
