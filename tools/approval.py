"""Which tools the user approves call by call: `TOOLS_REQUIRE_APPROVAL` (tool names, MCP server
names, or `*`) and the tool classes that say so (`BaseTool.requires_approval`). The turn asks
(chat/turn/approval.py); off by default, as the existing frontend cannot answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

from tools.base import BaseTool, ToolArgs
from tools.registry import registry

if TYPE_CHECKING:  # the store imports this module: not the MCP client with it
    from tools.mcp.toolset import McpTool

EVERY_TOOL = "*"


def approval_configured() -> bool:
    """Whether any tool may need approval (else a turn never pauses, and nothing is checked)."""
    return bool(settings.TOOLS_REQUIRE_APPROVAL) or any(tool.requires_approval for tool in registry)


def builtin_requires_approval(tool: BaseTool[ToolArgs]) -> bool:
    named = settings.TOOLS_REQUIRE_APPROVAL
    return tool.requires_approval or EVERY_TOOL in named or tool.name in named


def mcp_requires_approval(tool: McpTool) -> bool:
    named = settings.TOOLS_REQUIRE_APPROVAL
    return EVERY_TOOL in named or tool.name in named or tool.server.name in named
