"""The process's MCP servers, and their tools as the model sees them.

Servers start once per process and are shared by every conversation. Each tool keeps its own
name; only a name that clashes (with a built-in tool, or with a tool of another MCP server) is
prefixed with its server's name: `<server>_<name>`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from agents import FunctionTool
from agents.tool_context import ToolContext
from django.conf import settings

from tools.base import ToolResult
from tools.mcp.config import McpEntry
from tools.mcp.server import McpServer, State, arguments_parse

logger = logging.getLogger(__name__)
_NOT_A_NAME_CHAR = re.compile(r"[^A-Za-z0-9_-]")


class McpServers:
    """One `McpServer` per configured entry, for the lifetime of the process (or of a test)."""

    def __init__(self, entries: dict[str, McpEntry]) -> None:
        self.entries = entries
        self.servers = {name: McpServer(name, entry) for name, entry in entries.items()}

    def start(self) -> None:
        for server in self.servers.values():
            server.want()

    async def ready(self) -> None:
        """Start every server and wait for the first start of those never started (at most
        MCP_START_TIMEOUT). A server that was up before is offered with its last list at once, and
        one that failed is retried in the background: a server that hangs at start must not
        stall every turn."""
        self.start()
        pending = [server for server in self.servers.values() if not server.listed and not server.failures]
        if pending:
            await asyncio.gather(*(server.wait_started(settings.MCP_START_TIMEOUT) for server in pending))

    async def aclose(self) -> None:
        await asyncio.gather(*(server.close() for server in self.servers.values()))


_current: McpServers | None = None
_closing: set[asyncio.Task[None]] = set()


def mcp_servers() -> McpServers:
    """The servers of `settings.MCP_SERVERS`; built on first use, on the serving loop."""
    global _current
    if _current is None or _current.entries != settings.MCP_SERVERS:
        if _current is not None:
            # Only tests change the setting while running; the old servers close in their owner tasks.
            task = asyncio.get_running_loop().create_task(_current.aclose())
            _closing.add(task)
            task.add_done_callback(_closing.discard)
        _current = McpServers(dict(settings.MCP_SERVERS))
    return _current


def mcp_start() -> None:
    """Start the configured servers now (process start-up) rather than on the first turn."""
    if settings.MCP_SERVERS:
        mcp_servers().start()


async def mcp_shutdown() -> None:
    """Close every server in its owner task (process exit)."""
    global _current
    current, _current = _current, None
    if current is not None:
        await current.aclose()
    await asyncio.gather(*_closing, return_exceptions=True)


@dataclass(frozen=True)
class McpTool:
    """An MCP tool under the name the model sees."""

    name: str
    server: McpServer
    tool: types.Tool

    @property
    def description(self) -> str:
        fallback = f"The {self.tool.name} tool of the MCP server {self.server.name}."
        return self.tool.description or self.tool.title or fallback

    @property
    def parameters(self) -> dict[str, Any]:
        schema = dict(self.tool.input_schema or {})
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})
        return schema

    async def invoke(self, raw_arguments: str) -> ToolResult:
        arguments = arguments_parse(raw_arguments)
        if arguments is None:
            return ToolResult.failure("Invalid arguments: not a JSON object.")
        return await self.server.call(self.tool.name, arguments)

    def function_tool(self) -> FunctionTool:
        async def on_invoke(context: ToolContext[Any], raw_arguments: str) -> ToolResult:
            return await self.invoke(raw_arguments)

        return FunctionTool(
            name=self.name,
            description=self.description,
            params_json_schema=self.parameters,
            on_invoke_tool=on_invoke,
            # The server validates its arguments against its own schema; strict mode would
            # demand every property be required.
            strict_json_schema=False,
        )


def _clean(name: str) -> str:
    """A name the providers accept (`^[A-Za-z0-9_-]{1,64}$`)."""
    return _NOT_A_NAME_CHAR.sub("_", name)[:64] or "tool"


def mcp_tools_named(servers: Iterable[McpServer], taken: set[str]) -> list[McpTool]:
    """Every listed tool of the servers, named: its own name unless it clashes with `taken` (the
    built-in tools) or with another server's tool, then `<server>_<name>`."""
    listed = [(server, tool) for server in servers for tool in server.tools]
    counts = Counter(_clean(tool.name) for _, tool in listed)
    named: list[McpTool] = []
    used = set(taken)
    for server, tool in listed:
        name = _clean(tool.name)
        if name in taken or counts[name] > 1:
            name = _clean(f"{server.name}_{tool.name}")
        if name in used:
            logger.warning("MCP tool %s of %s is left out: its name %r is taken", tool.name, server.name, name)
            continue
        used.add(name)
        named.append(McpTool(name=name, server=server, tool=tool))
    return named


def mcp_tool_enabled(tool: McpTool) -> bool:
    """`TOOLS_ENABLED` names a tool by the name the model sees, or all of a server's by its name."""
    allowed = settings.TOOLS_ENABLED
    return allowed is None or tool.name in allowed or tool.server.name in allowed


def mcp_servers_status() -> dict[str, dict[str, Any]]:
    """Each configured server's state for `/health` and `/tools`; starts nothing."""
    status: dict[str, dict[str, Any]] = {}
    running = _current.servers if _current is not None and _current.entries == settings.MCP_SERVERS else {}
    for name, entry in settings.MCP_SERVERS.items():
        server = running.get(name)
        state = server.state if server is not None else State.IDLE
        report: dict[str, Any] = {"status": str(state), "transport": entry.transport}
        if server is not None and server.listed:
            report["tools"] = len(server.tools)
        if server is not None and server.error and state != State.UP:
            report["error"] = server.error
            if state == State.DOWN and server.retry_in() > 0:
                report["retry_in"] = round(server.retry_in(), 1)
        status[name] = report
    return status
