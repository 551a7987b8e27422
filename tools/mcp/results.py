"""What the model reads: an MCP tool result as text, and failures as short sentences."""

from __future__ import annotations

import json

import mcp_types as types
from django.conf import settings

from tools.base import ToolResult

MAX_ERROR_CHARS = 300


def _content_text(item: types.ContentBlock) -> str:
    if isinstance(item, types.TextContent):
        return item.text
    if isinstance(item, types.EmbeddedResource):
        resource = item.resource
        if isinstance(resource, types.TextResourceContents):
            return resource.text
        return f"[binary resource {resource.uri} ({resource.mime_type or 'unknown type'})]"
    if isinstance(item, types.ResourceLink):
        return f"[resource {item.uri}]"
    if isinstance(item, types.ImageContent | types.AudioContent):
        # The chat carries text only: say what there was rather than pass base64 to the model.
        return f"[{item.type} ({item.mime_type}) not shown]"
    return f"[{getattr(item, 'type', 'unknown')} content not shown]"


def call_result(server: str, tool: str, result: types.CallToolResult) -> ToolResult:
    text = "\n".join(_content_text(item) for item in result.content)
    if not text and result.structured_content is not None:
        text = json.dumps(result.structured_content, ensure_ascii=False)
    limit = settings.TOOLS_MAX_READ_BYTES
    if len(text) > limit:
        text = f"{text[:limit]}\n[truncated: the result has {len(text)} characters; showing the first {limit}]"
    if result.is_error:
        return ToolResult.failure(text or f"the tool {tool} of the MCP server {server} failed")
    return ToolResult.success(text, server=server, tool=tool)


def error_describe(exc: BaseException) -> str:
    """The innermost cause, in a sentence short enough for `/health` and the model."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, OSError) and exc.strerror:
        message = exc.strerror
    else:
        message = str(exc) or type(exc).__name__
    if type(exc).__name__ not in message:
        message = f"{type(exc).__name__}: {message}"
    return message[:MAX_ERROR_CHARS]
