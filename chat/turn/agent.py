"""The agent a turn runs: its instructions, model, tools, and the run's configuration."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from agents import Agent, FunctionTool, RunConfig, ToolErrorFormatterArgs
from django.conf import settings

from chat.catalog import CatalogModel
from chat.providers import model_resolve
from observability.tracing import sdk_tracing_options
from tools.adapter import function_tool
from tools.registry import registry


@lru_cache(maxsize=4)
def _instructions(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _tool_not_found(offered: list[str], args: ToolErrorFormatterArgs[Any]) -> str | None:
    """What the model reads when it calls a tool it was not offered: the turn goes on."""
    if args.kind != "tool_not_found":
        return None  # the SDK's own message
    available = ", ".join(offered) if offered else "none"
    return f"Error: there is no tool named {args.tool_name!r}. The tools you can call are: {available}."


def run_config_build(agent: Agent[Any]) -> RunConfig:
    offered = [tool.name for tool in agent.tools]
    return RunConfig(
        **sdk_tracing_options(),
        workflow_name="DreamyTin chat",
        tool_not_found_behavior="return_error_to_model",
        tool_error_formatter=partial(_tool_not_found, offered),
    )


def agent_build(model: CatalogModel, mcp_tools: Sequence[FunctionTool] = ()) -> Agent[Any]:
    """The turn's agent: the enabled built-in tools, then the MCP servers' (`mcp_tools`)."""
    offered = registry.enabled() if model.supports_tools else []
    resolved = model_resolve(model)
    # Only the offered tools' paragraphs: a model must not be told to cite notes it cannot search.
    paragraphs = [tool.instructions for tool in offered if tool.instructions]
    return Agent(
        name="DreamyTin",
        instructions="\n\n".join([_instructions(Path(settings.SYSTEM_PROMPT_FILE)), *paragraphs]),
        model=resolved.model,
        model_settings=resolved.settings,
        tools=[*(function_tool(tool) for tool in offered), *(mcp_tools if model.supports_tools else ())],
    )
