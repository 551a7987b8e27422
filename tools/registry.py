"""The tool registry: an object filled in `ToolsConfig.ready()` by importing every installed
app's `tools` module, as `django.contrib.admin` discovers `admin` modules."""

from __future__ import annotations

import re
from collections.abc import Iterator

from django.conf import settings
from django.utils.module_loading import autodiscover_modules

from tools.base import BaseTool, ToolArgs

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class AlreadyRegistered(Exception):
    pass


class NotRegistered(Exception):
    pass


class ToolRegistry:
    def __init__(self) -> None:
        # `autodiscover_modules` copies and restores `_registry` when an import fails.
        self._registry: dict[str, BaseTool[ToolArgs]] = {}

    def register(self, tool_class: type[BaseTool[ToolArgs]]) -> type[BaseTool[ToolArgs]]:
        """Register a tool class (usable as a decorator)."""
        name = tool_class.name
        if name in self._registry:
            existing = type(self._registry[name])
            raise AlreadyRegistered(
                f"Tool name {name!r} of {tool_class.__module__}.{tool_class.__qualname__} is already "
                f"registered by {existing.__module__}.{existing.__qualname__}"
            )
        self._registry[name] = tool_class()
        return tool_class

    def unregister(self, name: str) -> None:
        if name not in self._registry:
            raise NotRegistered(f"Tool {name!r} is not registered")
        del self._registry[name]

    def get(self, name: str) -> BaseTool[ToolArgs]:
        try:
            return self._registry[name]
        except KeyError as exc:
            raise NotRegistered(f"Tool {name!r} is not registered") from exc

    def __contains__(self, name: object) -> bool:
        return name in self._registry

    def __iter__(self) -> Iterator[BaseTool[ToolArgs]]:
        return iter(self._registry.values())

    def enabled(self) -> list[BaseTool[ToolArgs]]:
        """Registered, available tools that `TOOLS_ENABLED` allows (None: all), in registration order."""
        allowed = settings.TOOLS_ENABLED
        return [
            tool for name, tool in self._registry.items() if (allowed is None or name in allowed) and tool.available()
        ]

    def autodiscover(self) -> None:
        autodiscover_modules("tools", register_to=self)


registry = ToolRegistry()


def register(tool_class: type[BaseTool[ToolArgs]]) -> type[BaseTool[ToolArgs]]:
    """Class decorator: `@register` puts the tool in the project registry."""
    return registry.register(tool_class)
