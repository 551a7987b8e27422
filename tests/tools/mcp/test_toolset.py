"""Naming: an MCP tool keeps its own name unless it clashes; then `<server>_<name>`."""

from __future__ import annotations

import mcp_types as types

from tools.mcp.config import StdioEntry
from tools.mcp.server import McpServer
from tools.mcp.toolset import mcp_tools_named


def server(name: str, *tool_names: str) -> McpServer:
    listed = McpServer(name, StdioEntry(command="unused"))
    listed.tools = [types.Tool(name=tool, input_schema={"type": "object"}) for tool in tool_names]
    return listed


def test_own_names_unless_they_clash_with_a_builtin_or_another_server():
    named = mcp_tools_named(
        [server("git", "status", "search", "ls"), server("web", "search", "fetch.page")], taken={"ls", "read_file"}
    )
    assert [(tool.name, tool.server.name, tool.tool.name) for tool in named] == [
        ("status", "git", "status"),
        ("git_search", "git", "search"),
        ("git_ls", "git", "ls"),
        ("web_search", "web", "search"),
        ("fetch_page", "web", "fetch.page"),  # made a name the providers accept
    ]


def test_a_prefixed_name_that_is_still_taken_is_left_out():
    named = mcp_tools_named([server("a", "ls", "a_ls")], taken={"ls"})
    assert [tool.name for tool in named] == ["a_ls"]
