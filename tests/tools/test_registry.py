from __future__ import annotations

import sys

import pytest
from django.apps import AppConfig, apps
from django.core import checks
from django.test import override_settings

from tools.base import BaseTool, ToolArgs, ToolResult
from tools.registry import AlreadyRegistered, NotRegistered, registry
from tools.tools import ListDirectory


def test_builtin_tools_are_discovered_at_start_up():
    assert {"ls", "read_file"} <= {tool.name for tool in registry}


def test_a_duplicate_name_is_an_error():
    with pytest.raises(AlreadyRegistered, match=r"'ls'.*already registered"):
        registry.register(ListDirectory)


@pytest.fixture
def extra_app(monkeypatch):
    """Install one more app for `autodiscover` to see."""

    def install(name: str) -> None:
        extra = AppConfig.create(name)
        installed = apps.get_app_configs()
        monkeypatch.setattr(apps, "get_app_configs", lambda: [*installed, extra])

    yield install
    for module in ("tests.tools.sample_app.tools", "tests.tools.broken_app.tools"):
        sys.modules.pop(module, None)


def test_a_tool_in_another_app_is_discovered(extra_app):
    extra_app("tests.tools.sample_app")
    try:
        registry.autodiscover()
        assert "echo" in registry
    finally:
        registry.unregister("echo")


def test_a_failed_import_leaves_the_registry_as_it_was(extra_app):
    extra_app("tests.tools.broken_app")
    before = [tool.name for tool in registry]
    with pytest.raises(ImportError, match="broken on purpose"):
        registry.autodiscover()
    assert [tool.name for tool in registry] == before
    assert "half_baked" not in registry


def test_tools_enabled_filters_by_name():
    with override_settings(TOOLS_ENABLED=["read_file"]):
        assert [tool.name for tool in registry.enabled()] == ["read_file"]
    with override_settings(TOOLS_ENABLED=None):
        assert {"ls", "read_file"} <= {tool.name for tool in registry.enabled()}


def test_unregister_unknown():
    with pytest.raises(NotRegistered):
        registry.unregister("nope")


class BadName(BaseTool[ToolArgs]):
    name = "bad name!"
    description = ""
    args_model = ToolArgs

    async def execute(self, args: ToolArgs) -> ToolResult:
        return ToolResult.success("")


def test_system_check_validates_the_registry():
    assert [m for m in checks.run_checks(tags=["tools"]) if m.level >= checks.ERROR] == []
    registry.register(BadName)
    try:
        ids = {message.id for message in checks.run_checks(tags=["tools"])}
        assert {"tools.E001", "tools.E002"} <= ids
    finally:
        registry.unregister("bad name!")
    with override_settings(TOOLS_ENABLED=["ls", "typo_tool"]):
        assert "tools.W001" in {message.id for message in checks.run_checks(tags=["tools"])}
