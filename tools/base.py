"""What a tool is: a name, a description, a typed argument model, and an async `execute`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict


class ToolArgs(BaseModel):
    """Base for argument models: unknown arguments are an error the model is told about."""

    model_config = ConfigDict(extra="forbid")


ArgsT = TypeVar("ArgsT", bound=ToolArgs)


class ToolError(Exception):
    """The tool could not do what was asked; the message is for the model (no host paths)."""


@dataclass(frozen=True, kw_only=True)
class ToolResult:
    """`content` is what the model reads; `data` is structured detail for the UI and logs."""

    ok: bool
    content: str
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def success(cls, content: str, **data: Any) -> ToolResult:
        return cls(ok=True, content=content, data=data)

    @classmethod
    def failure(cls, message: str) -> ToolResult:
        return cls(ok=False, content=f"Error: {message}")

    def __str__(self) -> str:
        # The Agents SDK stringifies plain tool outputs: the model sees `content`.
        return self.content


class BaseTool(ABC, Generic[ArgsT]):
    name: ClassVar[str]
    description: ClassVar[str]
    args_model: ClassVar[type[ToolArgs]]
    # Seconds; None uses TOOLS_TIMEOUT.
    timeout: ClassVar[float | None] = None
    # A paragraph added to the system prompt while the tool is offered (how to use its output).
    instructions: ClassVar[str] = ""
    # The user approves each call before it runs (as if TOOLS_REQUIRE_APPROVAL named it).
    requires_approval: ClassVar[bool] = False

    @abstractmethod
    async def execute(self, args: ArgsT) -> ToolResult:
        """Run the tool. Raise `ToolError` for failures the model should read."""

    def available(self) -> bool:
        """Whether the tool is offered to the model now (e.g. it needs a folder configured)."""
        return True

    def describe(self) -> str:
        """The description the model sees; a tool may add run-time facts (e.g. its roots)."""
        return self.description
