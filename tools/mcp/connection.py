"""Opening one MCP session over stdio or streamable HTTP.

`mcp_connect` must be entered and exited in the same task (the transports are anyio task
groups): `tools.mcp.server` does both in the server's owner task.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx2
from mcp import ClientSession, StdioServerParameters
from mcp.client.session import IncomingMessage
from mcp.client.stdio import get_default_environment, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.message import SessionMessage

from tools.mcp.config import HttpEntry, McpEntry, StdioEntry

LAUNCHER = Path(__file__).with_name("launch.py")
HTTP_TIMEOUT_SECONDS = 30.0
HTTP_READ_TIMEOUT_SECONDS = 300.0
OnMessage = Callable[[IncomingMessage], Awaitable[None]]
OnClosed = Callable[[], None]


class ServerStartError(Exception):
    """The server could not be started; the message is shown in `/health` and to the model."""


@dataclass(frozen=True)
class Connection:
    session: ClientSession


def stdio_environment(entry: StdioEntry) -> dict[str, str]:
    """What the child gets: mcp's inherited minimum (HOME, LOGNAME, PATH, SHELL, TERM, USER, so
    `npx` and `uvx` work) and its entry's `env`; never the backend's keys or settings."""
    return get_default_environment() | entry.env


def _stdio_parameters(entry: StdioEntry, max_bytes: int) -> StdioServerParameters:
    env = stdio_environment(entry)
    if shutil.which(entry.command, path=env.get("PATH")) is None and not (
        entry.cwd and os.access(Path(entry.cwd, entry.command), os.X_OK)
    ):
        raise ServerStartError(f"command {entry.command!r} was not found on the server's PATH")
    if entry.cwd and not Path(entry.cwd).is_dir():
        raise ServerStartError(f"cwd {entry.cwd!r} is not a directory")
    # The launcher makes the child die with this process, even when it is killed (Linux), and
    # drops any message over `max_bytes` before it reaches us (the mcp library reads a line whole
    # and parses it on the event loop).
    return StdioServerParameters(
        command=sys.executable,
        # -I -S: no user site, no PYTHON* variables, no site packages (70 ms instead of 170 here).
        args=["-I", "-S", str(LAUNCHER), str(os.getpid()), str(max_bytes), entry.command, *entry.args],
        env=env,
        cwd=entry.cwd,
    )


async def _relay(
    source: anyio.abc.ObjectReceiveStream[SessionMessage | Exception],
    target: anyio.abc.ObjectSendStream[SessionMessage | Exception],
    on_closed: OnClosed,
) -> None:
    """Pass the transport's messages to the session and say when they end: a stdio server that
    exits ends them at once, so its death is known before the next call, not by failing it."""
    try:
        async with target:
            async for item in source:
                await target.send(item)
    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
        pass
    finally:
        on_closed()


@asynccontextmanager
async def mcp_connect(
    entry: McpEntry, *, max_bytes: int, on_message: OnMessage, on_closed: OnClosed
) -> AsyncIterator[Connection]:
    """An initialized session; `on_closed` runs when the server's side of it ends."""
    async with AsyncExitStack() as stack:
        if isinstance(entry, HttpEntry):
            # mcp's own defaults: a server may hold a response stream open for minutes.
            timeout = httpx2.Timeout(HTTP_TIMEOUT_SECONDS, read=HTTP_READ_TIMEOUT_SECONDS)
            client = await stack.enter_async_context(httpx2.AsyncClient(headers=entry.headers, timeout=timeout))
            read_stream, write_stream = await stack.enter_async_context(
                streamable_http_client(entry.url, http_client=client)
            )
        else:
            parameters = _stdio_parameters(entry, max_bytes)
            read_stream, write_stream = await stack.enter_async_context(stdio_client(parameters))
        relayed_send, relayed_receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        group = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(group.cancel_scope.cancel)  # runs first on exit: the relay never outlives us
        group.start_soon(_relay, read_stream, relayed_send, on_closed)
        session = ClientSession(relayed_receive, write_stream, message_handler=on_message)
        await stack.enter_async_context(session)
        await session.initialize()
        yield Connection(session=session)
