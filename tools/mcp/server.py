"""One MCP server, owned by one long-lived task.

The owner task opens the session, serves every call put on its queue, and closes the session:
anyio's transports must be entered and exited in the same task, and a session shared by all
conversations has no other natural owner. Calls run concurrently on the open session.

A server starts when first wanted (`want`), never from a health check. When it stops (its
process exited, its connection failed) it is down until the next call or turn wants it again;
failed starts back off (1, 2, 4, ... 60 s), and while a server is backing off its calls fail
at once with the reason instead of waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import mcp_types as types
from django.conf import settings
from mcp.client.session import IncomingMessage
from mcp.shared.exceptions import MCPError

from tools.base import ToolResult
from tools.mcp.config import McpEntry
from tools.mcp.connection import Connection, ServerStartError, mcp_connect
from tools.mcp.results import call_result, error_describe

logger = logging.getLogger(__name__)
MAX_BACKOFF_SECONDS = 60.0
MAX_LIST_PAGES = 100
CLOSE_TIMEOUT_SECONDS = 10.0
CALL_GRACE_SECONDS = 1.0
RESULT_TOO_LARGE = -32050  # the launcher's error for a message over MCP_MAX_RESULT_BYTES (launch.py)


class State(StrEnum):
    IDLE = "idle"  # not wanted yet
    STARTING = "starting"
    UP = "up"
    DOWN = "down"
    CLOSED = "closed"


@dataclass(eq=False)
class _Call:
    tool: str
    arguments: dict[str, Any]
    timeout: float
    future: asyncio.Future[ToolResult] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass(frozen=True)
class _Marker:
    """A connection event for the owner: `relist` (tools changed), `ended`, or `close`."""

    kind: str
    generation: int


class McpServer:
    def __init__(self, name: str, entry: McpEntry) -> None:
        self.name = name
        self.entry = entry
        self.state = State.IDLE
        self.error: str | None = None
        self.tools: list[types.Tool] = []
        self.listed = False  # `tools` came from the server at least once
        self.failures = 0
        self.retry_at = 0.0  # loop time before which a failed server is not started again
        self._queue: asyncio.Queue[_Call | _Marker] = asyncio.Queue()
        self._wanted = asyncio.Event()
        self._attempt_done = asyncio.Event()
        self._generation = 0
        self._queued_calls = 0  # calls on the queue that no session has taken yet
        self._closing = False
        self._owner: asyncio.Task[None] | None = None

    # -- used by turns, /tools and /health ---------------------------------------------------
    def want(self) -> bool:
        """Start the server unless it is up, starting or backing off; True when it may soon serve."""
        if self.state in (State.UP, State.STARTING):
            return True
        if self._closing or time.monotonic() < self.retry_at:
            return False
        if self._owner is None:
            self._owner = asyncio.create_task(self._own(), name=f"mcp server {self.name}")
        self._attempt_done.clear()
        self._wanted.set()
        return True

    async def wait_started(self, within: float) -> bool:
        """Wait (at most `within` seconds) for a start in progress; True when the server is up."""
        if self._wanted.is_set() or self.state == State.STARTING:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._attempt_done.wait(), within)
        return self.state == State.UP

    def retry_in(self) -> float:
        return max(0.0, self.retry_at - time.monotonic())

    @property
    def timeout(self) -> float:
        return self.entry.timeout or settings.MCP_TIMEOUT

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolResult:
        """Call a tool; every failure (down, time-out, error) is a result the model can read."""
        if self.state != State.UP:
            if not self.want():
                return ToolResult.failure(
                    f"The MCP server {self.name} is not running ({self.error or 'stopped'}); "
                    f"it is tried again in {self.retry_in():.0f} s."
                )
            if not await self.wait_started(settings.MCP_START_TIMEOUT):
                return ToolResult.failure(f"The MCP server {self.name} could not start: {self.error or 'timed out'}.")
        timeout = self.timeout
        call = _Call(tool=tool, arguments=arguments, timeout=timeout)
        self._queued_calls += 1
        self._queue.put_nowait(call)
        try:
            # A little over the session's own time-out, which also tells the server to stop.
            return await asyncio.wait_for(call.future, timeout + CALL_GRACE_SECONDS)
        except TimeoutError:
            return ToolResult.failure(
                f"The tool {tool} of the MCP server {self.name} did not answer within {timeout:g} seconds."
            )

    async def close(self) -> None:
        """Close the session in its owner task; calls still queued are told the server stopped."""
        self._closing = True
        owner = self._owner
        if owner is None or owner.done():
            self.state = State.CLOSED
            return
        self._queue.put_nowait(_Marker("close", self._generation))
        self._wanted.set()
        try:
            await asyncio.wait_for(asyncio.shield(owner), CLOSE_TIMEOUT_SECONDS)
        except TimeoutError:
            logger.warning("MCP server %s did not close in time", self.name)
            owner.cancel()
            await asyncio.gather(owner, return_exceptions=True)

    # -- the owner task ----------------------------------------------------------------------
    async def _own(self) -> None:
        while True:
            await self._wanted.wait()
            if self._closing:
                break
            await self._run_once()
            if self._closing:
                break
            if self._queued_calls and not self.retry_in():
                # Calls came for a server that has just stopped: start it again for them.
                continue
            self._fail_queued(f"The MCP server {self.name} stopped: {self.error or 'its connection ended'}.")
            self._wanted.clear()
            self._attempt_done.set()
        self.state = State.CLOSED
        self._attempt_done.set()
        self._fail_queued(f"The MCP server {self.name} was shut down.")

    async def _run_once(self) -> None:
        self._generation += 1
        generation = self._generation
        self.state = State.STARTING
        started = time.monotonic()
        try:
            async with contextlib.AsyncExitStack() as stack:
                # Only the start is timed: the session then stays open for as long as it serves.
                async with asyncio.timeout(settings.MCP_START_TIMEOUT):
                    connection = await stack.enter_async_context(
                        mcp_connect(
                            self.entry,
                            max_bytes=settings.MCP_MAX_RESULT_BYTES,
                            on_message=lambda message: self._on_message(message, generation),
                            on_closed=lambda: self._queue.put_nowait(_Marker("ended", generation)),
                        )
                    )
                    await self._list_tools(connection)
                if self._closing:
                    return
                self.state, self.error, self.failures = State.UP, None, 0
                self._attempt_done.set()
                logger.info(
                    "MCP server %s is up with %d tools (%.2f s)",
                    self.name,
                    len(self.tools),
                    time.monotonic() - started,
                    extra={"event": "mcp_up", "server": self.name},
                )
                await self._serve(connection, generation)
        except TimeoutError:
            self._failed(f"it did not start within {settings.MCP_START_TIMEOUT:g} seconds")
        except Exception as exc:  # noqa: BLE001 - a broken server must never stop the backend; logged in _failed
            self._failed(str(exc) if isinstance(exc, ServerStartError) else error_describe(exc))
        self.state = State.DOWN

    def _failed(self, error: str) -> None:
        self.failures += 1
        self.error = error
        delay = min(MAX_BACKOFF_SECONDS, 2.0 ** (self.failures - 1))
        self.retry_at = time.monotonic() + delay
        logger.warning(
            "MCP server %s failed: %s (next try in %.0f s)",
            self.name,
            error,
            delay,
            extra={"event": "mcp_failed", "server": self.name},
        )

    async def _serve(self, connection: Connection, generation: int) -> None:
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, _Call):
                    self._queued_calls -= 1
                    task = asyncio.create_task(self._run_call(connection, item))
                    running.add(task)
                    task.add_done_callback(running.discard)
                elif item.generation != generation:
                    continue  # about an earlier connection
                elif item.kind == "relist":
                    await self._relist(connection)
                elif item.kind == "ended":
                    self.error = "the server closed the connection"
                    logger.warning("MCP server %s stopped", self.name, extra={"event": "mcp_stopped"})
                    return
                else:  # close
                    return
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _run_call(self, connection: Connection, call: _Call) -> None:
        if call.future.done():  # the caller gave up while the call was queued
            return
        work = asyncio.ensure_future(
            connection.session.call_tool(call.tool, call.arguments, read_timeout_seconds=call.timeout)
        )
        # A caller that gives up (time-out, cancelled turn) stops the call too.
        call.future.add_done_callback(lambda future: work.cancel() if future.cancelled() else None)
        try:
            result: ToolResult = call_result(self.name, call.tool, await work)
        except asyncio.CancelledError:
            if not call.future.done():
                call.future.set_result(ToolResult.failure(f"The MCP server {self.name} stopped during the call."))
            raise
        except MCPError as exc:
            result = ToolResult.failure(self._error_sentence(call, exc))
        except Exception as exc:
            logger.warning("MCP call %s.%s failed", self.name, call.tool, exc_info=True)
            result = ToolResult.failure(f"The call to the MCP server {self.name} failed: {error_describe(exc)}")
        if not call.future.done():
            call.future.set_result(result)

    def _error_sentence(self, call: _Call, exc: MCPError) -> str:
        if exc.code == types.REQUEST_TIMEOUT:
            return f"The tool {call.tool} of the MCP server {self.name} did not answer within {call.timeout:g} seconds."
        if exc.code == RESULT_TOO_LARGE:
            return (
                f"The tool {call.tool} of the MCP server {self.name} returned too much: {exc.message}. Ask it for less."
            )
        if exc.code == types.CONNECTION_CLOSED:
            return f"The MCP server {self.name} stopped during the call; the next call starts it again."
        return f"The MCP server {self.name} refused the call to {call.tool}: {exc.message}"

    async def _list_tools(self, connection: Connection) -> None:
        tools: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(MAX_LIST_PAGES):  # a server that pages forever cannot hang us
            page = await connection.session.list_tools(
                params=types.PaginatedRequestParams(cursor=cursor) if cursor else None
            )
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        self.tools, self.listed = tools, True

    async def _relist(self, connection: Connection) -> None:
        try:
            await self._list_tools(connection)
        except Exception as exc:  # noqa: BLE001 - the last list stays in use; logged
            logger.warning("MCP server %s: could not refresh its tools: %s", self.name, error_describe(exc))

    async def _on_message(self, message: IncomingMessage, generation: int) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self._queue.put_nowait(_Marker("relist", generation))
        elif isinstance(message, Exception):
            logger.warning("MCP server %s: transport error: %s", self.name, error_describe(message))

    def _fail_queued(self, reason: str) -> None:
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, _Call):
                self._queued_calls -= 1
                if not item.future.done():
                    item.future.set_result(ToolResult.failure(reason))


def arguments_parse(raw: str) -> dict[str, Any] | None:
    """The model's argument string as an object, or None when it is not one."""
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
