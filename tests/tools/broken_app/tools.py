"""A tools module that registers a tool and then fails to import."""

from tools.base import BaseTool, ToolArgs, ToolResult
from tools.registry import register


@register
class HalfBaked(BaseTool[ToolArgs]):
    name = "half_baked"
    description = "Never usable."
    args_model = ToolArgs

    async def execute(self, args: ToolArgs) -> ToolResult:
        return ToolResult.success("")


raise ImportError("this module is broken on purpose")
