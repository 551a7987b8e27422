"""REST endpoint of the tools app: `GET /tools`."""

from __future__ import annotations

from typing import Any, Literal

from django.http import HttpRequest
from ninja import Field, Router, Schema

from tools.mcp.toolset import mcp_servers_status
from tools.offered import tools_catalog

router = Router()


class ToolOut(Schema):
    name: str = Field(description="The name the model calls it by")
    source: Literal["builtin", "mcp"]
    server: str | None = Field(None, description="The MCP server that provides it")
    mcp_name: str | None = Field(None, description="Its name on that server, when it was prefixed here")
    description: str
    parameters: dict[str, Any] = Field(description="JSON schema of its arguments")


class McpServerOut(Schema):
    status: Literal["idle", "starting", "up", "down", "closed"]
    transport: Literal["stdio", "http"]
    tools: int | None = Field(None, description="Tools it lists (once it has listed them)")
    error: str | None = Field(None, description="Why it is not up")
    retry_in: float | None = Field(None, description="Seconds before it may be started again")


class ToolsOut(Schema):
    tools: list[ToolOut]
    mcp_servers: dict[str, McpServerOut] = Field(description="Each configured MCP server and its state")


@router.get(
    "/tools",
    response=ToolsOut,
    tags=["tools"],
    summary="Every tool the model can be offered: built-in and MCP",
    description="Starts the MCP servers that have not started yet and waits for them (at most MCP_TIMEOUT); "
    "tools of servers that are down are not listed. `TOOLS_ENABLED` applies.",
)
async def tools(request: HttpRequest) -> dict[str, Any]:
    catalog = await tools_catalog()
    return {"tools": catalog, "mcp_servers": mcp_servers_status()}
