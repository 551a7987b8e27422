"""The MCP servers file: the `{"mcpServers": {...}}` shape that Claude Desktop, Cursor and VS Code
share, so a user can paste their entries unchanged.

Parsed at start-up (`dreamytin.config`): a missing file, bad JSON or a bad entry stops the
server with a message naming `MCP_SERVERS_FILE`. A server that then fails to *start* is not a
start-up error: it shows in `/health` and the others still work.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
# `${NAME}` in values is taken from the backend's environment when the file is read, so the file
# need not hold secrets (the Claude Code convention).
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class McpConfigError(ValueError):
    pass


class _Entry(BaseModel):
    # Other clients' extra keys (`autoApprove`, `alwaysAllow`, ...) are ignored, so an existing
    # file works as it is.
    model_config = ConfigDict(extra="ignore", frozen=True)

    disabled: bool = False
    timeout: float | None = Field(default=None, gt=0, description="Seconds per call; MCP_TIMEOUT when unset")


class StdioEntry(_Entry):
    """A server run as a child process, speaking MCP on its stdin and stdout."""

    type: Literal["stdio"] = "stdio"
    command: str = Field(min_length=1)
    args: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None

    @property
    def transport(self) -> str:
        return "stdio"


class HttpEntry(_Entry):
    """A server reached over MCP's streamable HTTP transport."""

    type: Literal["http", "streamable-http", "streamableHttp"] = "http"
    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)

    @property
    def transport(self) -> str:
        return "http"


McpEntry = StdioEntry | HttpEntry


def _entry_parse(name: str, raw: Any) -> McpEntry:
    # Chosen by its keys: a plain union would report both models' errors for one bad entry.
    model: type[McpEntry] = HttpEntry if isinstance(raw, dict) and "url" in raw and "command" not in raw else StdioEntry
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'entry'}: {error['msg']}" for error in exc.errors()
        )
        raise McpConfigError(f"server {name!r}: {problems}") from exc


def _expand(value: str, environ: Mapping[str, str], where: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise McpConfigError(f"{where} uses ${{{name}}}, which is not set in the environment")
        return environ[name]

    return _VARIABLE.sub(replace, value)


def _expanded(name: str, entry: McpEntry, environ: Mapping[str, str]) -> McpEntry:
    where = f"server {name!r}"
    if isinstance(entry, HttpEntry):
        return entry.model_copy(
            update={
                "url": _expand(entry.url, environ, where),
                "headers": {key: _expand(value, environ, where) for key, value in entry.headers.items()},
            }
        )
    return entry.model_copy(
        update={
            "command": _expand(entry.command, environ, where),
            "args": tuple(_expand(arg, environ, where) for arg in entry.args),
            "env": {key: _expand(value, environ, where) for key, value in entry.env.items()},
        }
    )


def mcp_servers_load(path: Path, environ: Mapping[str, str] | None = None) -> dict[str, McpEntry]:
    """The enabled entries of the file, by server name; `McpConfigError` says what is wrong."""
    environ = os.environ if environ is None else environ
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise McpConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise McpConfigError(f"{path} is not valid JSON: {exc}") from exc
    entries = raw.get("mcpServers") if isinstance(raw, dict) else None
    if not isinstance(entries, dict):
        raise McpConfigError(f'{path} must be an object {{"mcpServers": {{"<name>": {{...}}}}}}')
    servers: dict[str, McpEntry] = {}
    for name, raw_entry in entries.items():
        if not SERVER_NAME.match(name):
            raise McpConfigError(f"{path}: server name {name!r} must be 1-32 of A-Z a-z 0-9 _ -")
        try:
            entry = _entry_parse(name, raw_entry)
            if not entry.disabled:
                servers[name] = _expanded(name, entry, environ)
        except McpConfigError as exc:
            raise McpConfigError(f"{path}: {exc}") from exc
    return servers
