"""A tool in another app: discovered by the registry like `admin` modules are."""

from tools.base import BaseTool, ToolArgs, ToolResult
from tools.registry import register


class EchoArgs(ToolArgs):
    text: str


@register
class Echo(BaseTool[EchoArgs]):
    name = "echo"
    description = "Repeat the text."
    args_model = EchoArgs

    async def execute(self, args: EchoArgs) -> ToolResult:
        return ToolResult.success(args.text)
