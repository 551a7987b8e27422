"""Registered tools as Agents SDK `FunctionTool`s.

Whatever goes wrong inside a tool (bad arguments, an exception, a time-out) comes back to the
model as a tool error it can read: a hand-built `FunctionTool` that raises fails the whole run.
"""

from __future__ import annotations

import asyncio
import json
import logging
from functools import lru_cache
from typing import Any

from agents import FunctionTool
from agents.tool_context import ToolContext
from django.conf import settings
from pydantic import ValidationError

from tools.base import BaseTool, ToolArgs, ToolError, ToolResult

logger = logging.getLogger(__name__)


def _validation_message(exc: ValidationError) -> str:
    problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}" for err in exc.errors())
    return f"Invalid arguments: {problems}"


async def tool_invoke(tool: BaseTool[ToolArgs], raw_arguments: str) -> ToolResult:
    """Validate, run with the time limit, and turn every failure into a `ToolResult`."""
    try:
        arguments = json.loads(raw_arguments or "{}")
        args = tool.args_model.model_validate(arguments)
    except json.JSONDecodeError:
        return ToolResult.failure("Invalid arguments: not valid JSON.")
    except ValidationError as exc:
        return ToolResult.failure(_validation_message(exc))
    timeout = tool.timeout if tool.timeout is not None else settings.TOOLS_TIMEOUT
    try:
        return await asyncio.wait_for(tool.execute(args), timeout)
    except ToolError as exc:
        return ToolResult.failure(str(exc))
    except TimeoutError:
        return ToolResult.failure(f"The tool {tool.name} did not finish within {timeout:g} seconds.")
    except Exception:
        logger.exception("tool %s failed", tool.name, extra={"event": "tool_failed", "tool": tool.name})
        return ToolResult.failure(f"The tool {tool.name} failed unexpectedly.")


@lru_cache(maxsize=128)
def _schema(args_model: type[ToolArgs]) -> dict[str, Any]:
    schema = args_model.model_json_schema()
    schema.setdefault("additionalProperties", False)
    return schema


def tool_schema(tool: BaseTool[ToolArgs]) -> dict[str, Any]:
    """The JSON schema of a tool's arguments, as the model is given it."""
    return _schema(tool.args_model)


def function_tool(tool: BaseTool[ToolArgs]) -> FunctionTool:
    async def on_invoke(context: ToolContext[Any], raw_arguments: str) -> ToolResult:
        return await tool_invoke(tool, raw_arguments)

    return FunctionTool(
        name=tool.name,
        description=tool.describe(),
        params_json_schema=tool_schema(tool),
        on_invoke_tool=on_invoke,
        # Strict schemas demand every property be required; ours have defaults and are
        # validated here instead.
        strict_json_schema=False,
    )
