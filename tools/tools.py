"""The built-in tools: `ls` and `read_file`, confined to the workspace (tools.workspace)."""

from __future__ import annotations

import fnmatch
import json
import os
import stat
import time
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from pydantic import Field

from tools.base import BaseTool, ToolArgs, ToolError, ToolResult
from tools.registry import register
from tools.text import text_codec, text_decode
from tools.workspace import Opened, Root, resolve_error, workspace_open_dir, workspace_open_file, workspace_roots

SNIFF_BYTES = 8192


def _workspace_hint() -> str:
    roots = workspace_roots()
    if len(roots) == 1:
        return "Paths are relative to the workspace (e.g. 'notes/todo.md'); '.' is its top."
    names = ", ".join(repr(root.name) for root in roots)
    return f"Paths start with a workspace name ({names}), e.g. '{roots[0].name}/README.md'; '.' lists them."


class LsArgs(ToolArgs):
    path: str = Field(default=".", description="Directory to list")
    show_hidden: bool = Field(default=False, description="Include entries whose name starts with '.'")
    details: bool = Field(default=False, description="Include size, type and modified time")
    pattern: str | None = Field(default=None, description="Glob filter on names, e.g. '*.py'")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def _list_dir(args: LsArgs) -> ToolResult:
    try:
        opened = workspace_open_dir(args.path)
    except OSError as exc:
        raise resolve_error(exc) from exc
    if isinstance(opened, list):
        return _list_roots(opened)
    limit = settings.TOOLS_MAX_ENTRIES
    with opened:
        names = sorted(os.listdir(opened.fd))
        selected = [
            name
            for name in names
            if (args.show_hidden or not name.startswith("."))
            and (args.pattern is None or fnmatch.fnmatchcase(name, args.pattern))
        ]
        entries: list[Any] = []
        for name in selected[:limit]:
            st = os.stat(name, dir_fd=opened.fd, follow_symlinks=False)
            kind = _kind(st.st_mode)
            shown = f"{name}/" if kind == "directory" else name
            if args.details:
                entries.append(
                    {
                        "name": shown,
                        "type": kind,
                        "size": st.st_size,
                        "modified": datetime.fromtimestamp(st.st_mtime, UTC).isoformat(timespec="seconds"),
                    }
                )
            else:
                entries.append(shown)
    body: dict[str, Any] = {"path": opened.display, "entries": entries, "count": len(selected)}
    if len(selected) > limit:
        body["truncated"] = f"showing the first {limit} of {len(selected)} entries; narrow with 'pattern'"
    return ToolResult.success(json.dumps(body, ensure_ascii=False), path=opened.display, count=len(selected))


def _list_roots(roots: list[Root]) -> ToolResult:
    body = {"path": ".", "entries": [f"{root.name}/" for root in roots], "count": len(roots)}
    return ToolResult.success(json.dumps(body, ensure_ascii=False), path=".", count=len(roots))


@register
class ListDirectory(BaseTool[LsArgs]):
    name = "ls"
    description = "List a directory of the workspace. Directories end with '/'. Returns JSON."
    args_model = LsArgs

    def describe(self) -> str:
        return f"{self.description} {_workspace_hint()}"

    async def execute(self, args: LsArgs) -> ToolResult:
        return await sync_to_async(_list_dir, thread_sensitive=False)(args)


class ReadFileArgs(ToolArgs):
    path: str = Field(description="File to read")
    encoding: str = Field(default="utf-8", description="Text encoding of the file")
    lines: int | None = Field(default=None, ge=1, description="Read at most this many lines")
    offset: int = Field(default=0, ge=0, description="Skip this many lines first")


def _read_bounded(opened: Opened, limit: int) -> tuple[bytes, bool]:
    """Read at most `limit` bytes (never the whole of a huge or sparse file)."""
    chunks: list[bytes] = []
    remaining = limit + 1
    while remaining > 0:
        chunk = os.read(opened.fd, min(remaining, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    data = b"".join(chunks)
    return data[:limit], len(data) > limit


def _read_file(args: ReadFileArgs, deadline: float) -> ToolResult:
    codec = text_codec(args.encoding)
    try:
        opened = workspace_open_file(args.path)
    except OSError as exc:
        raise resolve_error(exc) from exc
    limit = settings.TOOLS_MAX_READ_BYTES
    with opened:
        data, truncated = _read_bounded(opened, limit)
    if b"\x00" in data[:SNIFF_BYTES]:
        raise ToolError(f"{opened.display} looks like a binary file; only text files can be read.")
    text = text_decode(data, codec, truncated=truncated, deadline=deadline)
    if "\x00" in text:  # past the sniffed bytes: no text holds NUL, and PostgreSQL stores none
        raise ToolError(f"{opened.display} holds NUL characters; only text files can be read.")
    all_lines = text.splitlines(keepends=True)
    end = None if args.lines is None else args.offset + args.lines
    selected = all_lines[args.offset : end]
    content = "".join(selected)
    notes = []
    if truncated:
        notes.append(
            f"[truncated: the file is {opened.st.st_size} bytes; read the first {limit}. Use offset/lines for more.]"
        )
    if end is not None and end < len(all_lines):
        notes.append(f"[showing lines {args.offset + 1}-{end}; the text read has {len(all_lines)} lines]")
    if notes:
        content = content + ("\n" if content and not content.endswith("\n") else "") + "\n".join(notes)
    return ToolResult.success(
        content, path=opened.display, size=opened.st.st_size, truncated=truncated, lines=len(selected)
    )


@register
class ReadFile(BaseTool[ReadFileArgs]):
    name = "read_file"
    description = "Read a text file of the workspace."
    args_model = ReadFileArgs

    def describe(self) -> str:
        return f"{self.description} {_workspace_hint()}"

    async def execute(self, args: ReadFileArgs) -> ToolResult:
        # The thread cannot be stopped from outside: the decode stops itself when time is up.
        deadline = time.monotonic() + (self.timeout if self.timeout is not None else settings.TOOLS_TIMEOUT)
        return await sync_to_async(_read_file, thread_sensitive=False)(args, deadline)
