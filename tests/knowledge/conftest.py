"""A knowledge folder configured for the test, and the tool as the model calls it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

from tools.adapter import tool_invoke
from tools.base import ToolResult
from tools.registry import registry


@pytest.fixture
def notes(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "notes"
    root.mkdir()
    with override_settings(KNOWLEDGE_DIRS=[str(root)], KNOWLEDGE_SCAN_INTERVAL=0.5):
        yield root


async def search(query: str, **arguments: object) -> ToolResult:
    return await tool_invoke(registry.get("search_knowledge"), json.dumps({"query": query, **arguments}))


def citations(result: ToolResult) -> list[str]:
    return [entry["citation"] for entry in result.data.get("results", [])]
