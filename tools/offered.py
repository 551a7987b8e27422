"""Every tool the model can be offered: the registry's built-in tools and the MCP servers' tools,
by the names the model sees. Turns (`chat.turn.runner`) and `GET /tools` both read it from here."""

from __future__ import annotations

from typing import Any

from agents import FunctionTool
from django.conf import settings

from tools.adapter import tool_schema
from tools.mcp.toolset import McpTool, mcp_servers, mcp_tool_enabled, mcp_tools_named
from tools.registry import registry


async def mcp_tools_offered() -> list[McpTool]:
    """The enabled MCP tools, once the servers have started (or failed to)."""
    if not settings.MCP_SERVERS:
        return []
    servers = mcp_servers()
    await servers.ready()
    # Built-in names win whether or not TOOLS_ENABLED offers them, so a name never changes meaning.
    named = mcp_tools_named(servers.servers.values(), taken={tool.name for tool in registry})
    return [tool for tool in named if mcp_tool_enabled(tool)]


async def mcp_function_tools() -> list[FunctionTool]:
    return [tool.function_tool() for tool in await mcp_tools_offered()]


async def tools_catalog() -> list[dict[str, Any]]:
    """`GET /tools`: name, description, source and JSON schema of every tool the model can be offered."""
    catalog: list[dict[str, Any]] = [
        {"name": tool.name, "source": "builtin", "description": tool.describe(), "parameters": tool_schema(tool)}
        for tool in registry.enabled()
    ]
    catalog.extend(
        {
            "name": tool.name,
            "source": "mcp",
            "server": tool.server.name,
            "mcp_name": tool.tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        }
        for tool in await mcp_tools_offered()
    )
    return catalog
