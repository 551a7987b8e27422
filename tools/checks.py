"""System checks: every registered tool has a valid name, a description and a schema."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from tools.registry import TOOL_NAME, registry


def check_tools(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    problems: list[CheckMessage] = []
    for tool in registry:
        label = f"{type(tool).__module__}.{type(tool).__qualname__}"
        if not TOOL_NAME.match(tool.name):
            problems.append(
                Error(f"Tool name {tool.name!r} must match {TOOL_NAME.pattern}", obj=label, id="tools.E001")
            )
        if not tool.description.strip():
            problems.append(Error(f"Tool {tool.name!r} has no description", obj=label, id="tools.E002"))
        try:
            schema = tool.args_model.model_json_schema()
        except Exception as exc:  # noqa: BLE001 - any failure here is the tool author's to fix
            problems.append(Error(f"Tool {tool.name!r} has no JSON schema: {exc}", obj=label, id="tools.E003"))
            continue
        if schema.get("type") != "object":
            problems.append(Error(f"Tool {tool.name!r} arguments must be an object", obj=label, id="tools.E004"))
    # MCP tools are known only once their servers run: with servers configured, a name that no
    # app registers may be one of theirs.
    for name in settings.TOOLS_ENABLED or []:
        if name not in registry and not settings.MCP_SERVERS:
            problems.append(Warning(f"TOOLS_ENABLED names {name!r}, which no app registers", id="tools.W001"))
    return problems
