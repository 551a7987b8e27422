"""The existing frontend's page, modelled in asyncio: v2/frontend-tauri/src/App.tsx of
andreytim/dreamytin-ai (React, its Vite dev server), driving real sockets and real REST calls.

What matters is modelled as the page does it, its flaws included:
- React state is read through the render a closure was made in. `connectWebSocket` closes the
  `websocket` of its own render (often not the open one); the socket's `onclose` reconnects 3 s
  later through that same `connectWebSocket`, to the conversation current *then*
  (`currentSessionIdRef`). So a page may hold several sockets on one conversation.
- "+" (`createNewConversation`) POSTs and connects 100 ms later; a sidebar click
  (`selectConversation`) GETs, shows the messages, and connects 100 ms later.
- `sendMessage` sends on the state's socket; every socket feeds one handler
  (`handleWebSocketMessage`) that appends `stream` / `final_stream` to the last assistant entry.
- Browser-like: the Origin of the Vite dev server and a browser's User-Agent on every socket and
  request; a reload (`reload`) drops the page's sockets (1001) and timers without running a
  handler, and a new page starts on the same client.

Sockets, and apart from them requests, go round-robin over `base_urls`: with two workers a
page's sockets alternate between them, as behind a load balancer.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import string
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.typing import Origin

ORIGIN = "http://localhost:1420"  # the Vite dev server of the frontend
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
FRONTEND_DEFAULT_MODEL = "claude-3.5-haiku"  # v2/shared/config/models.json, before GET /models answers
CONNECT_DELAY = 0.1  # createNewConversation / selectConversation: setTimeout(connect, 100)
RECONNECT_DELAY = 3.0  # ws.onclose: setTimeout(connect, 3000)
WAIT = 30.0  # the longest a method waits for the page to get somewhere


class PageRefused(AssertionError):
    """The page would not do what the user asked (e.g. `sendMessage` returns early)."""


class PageStuck(AssertionError):
    """The page did not get where a method waits for in time."""


class Socket:
    """The browser's WebSocket: `onopen`, `onmessage`, `onclose`, `onerror` as the page sets
    them; `close()` and `send()` as a browser does them (a send after close is dropped)."""

    CONNECTING, OPEN, CLOSING, CLOSED = "connecting", "open", "closing", "closed"
    _ids = itertools.count(1)

    def __init__(self, page: Page, url: str, conversation_id: str) -> None:
        self.page = page
        self.url = url
        self.conversation_id = conversation_id
        self.id = next(self._ids)
        self.state = Socket.CONNECTING
        self.onopen: Callable[[], None] = lambda: None
        self.onmessage: Callable[[str], None] = lambda data: None
        self.onclose: Callable[[], None] = lambda: None
        self.onerror: Callable[[], None] = lambda: None
        self.received: list[dict[str, Any]] = []  # every frame, for a test's diagnosis
        self.mid_turn = False  # received a turn's event and not yet its stream_end
        self._connection: ClientConnection | None = None
        self._task = page.spawn(self._run(), pending=False)

    def __repr__(self) -> str:
        return f"<socket {self.id} {self.conversation_id} {self.state}>"

    async def _run(self) -> None:
        try:
            self._connection = await connect(
                self.url,
                origin=Origin(ORIGIN),
                user_agent_header=USER_AGENT,
                open_timeout=10,
                ping_interval=None,  # a browser sends no pings
            )
        except (OSError, TimeoutError, WebSocketException) as exc:
            self.page.log.append(f"socket {self.id} failed to connect: {exc!r}")
            self._closed(error=True)
            return
        if self.state is Socket.CLOSING:  # close() while connecting: the browser fails it
            await self._connection.close()
            self._closed(error=True)
            return
        self.state = Socket.OPEN
        self.page.dispatch(self.onopen)
        try:
            async for data in self._connection:
                if self.state is not Socket.OPEN:
                    continue  # a browser drops what arrives once close() was called
                event = json.loads(data)
                self.received.append(event)
                if "seq" in event:  # a turn's event
                    self.mid_turn = event["type"] != "stream_end"
                self.page.dispatch(self.onmessage, data)
        except ConnectionClosed:
            pass
        self._closed(error=False)

    def _closed(self, *, error: bool) -> None:
        self.state = Socket.CLOSED
        self.mid_turn = False
        if error:
            self.page.dispatch(self.onerror)
        self.page.dispatch(self.onclose)

    def send(self, data: str) -> None:
        if self.state is Socket.CONNECTING:
            raise PageRefused("InvalidStateError: send() on a connecting WebSocket")
        if self.state is Socket.OPEN:
            assert self._connection is not None
            self.page.spawn(self._connection.send(data))

    def close(self) -> None:
        if self.state is Socket.OPEN:
            assert self._connection is not None
            self.state = Socket.CLOSING
            self.page.spawn(self._connection.close())
        elif self.state is Socket.CONNECTING:
            self.state = Socket.CLOSING

    async def drop(self) -> None:
        """The page is gone (reload): closed with 1001, no handler runs."""
        if self._connection is not None and self.state in (Socket.OPEN, Socket.CLOSING):
            await self._connection.close(code=1001)
        self._task.cancel()
        self.state = Socket.CLOSED


@dataclass(frozen=True)
class Render:
    """The state values one render's closures see (React's useState)."""

    messages: tuple[dict[str, Any], ...] = ()
    is_loading: bool = False
    selected_model: str = FRONTEND_DEFAULT_MODEL
    session_id: str | None = None
    connection: str = "disconnected"
    websocket: Socket | None = None


class Page:
    """One page load of the frontend on one client. The methods named after App.tsx's functions
    take the render their closure belongs to; the public ones act as the user does, through the
    latest render, and wait until the page shows the outcome."""

    def __init__(self, http: httpx.AsyncClient, base_urls: Sequence[str]) -> None:
        self.http = http
        # Each its own turn-about: a page's consecutive sockets land on different workers.
        self._rest_urls = itertools.cycle(base_urls)
        self._socket_urls = itertools.cycle(base_urls)
        self.state = Render()
        self.reconnect_enabled = True  # isReconnectEnabledRef
        self.current_session_id: str | None = None  # currentSessionIdRef
        self.sockets: list[Socket] = []
        self.log: list[str] = []  # what happened, for a failing test's message
        self.alive = True
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._timer_ids = itertools.count()
        self._fired: set[int] = set()
        self._tasks: set[asyncio.Task[Any]] = set()  # requests, sends and closes in flight
        self._changed = asyncio.Event()

    # -- the browser ------------------------------------------------------------------------
    def spawn(self, coroutine: Coroutine[Any, Any, Any], *, pending: bool = True) -> asyncio.Task[Any]:
        """A task of the browser's; `pending` ones keep the page from being idle."""
        task = asyncio.get_running_loop().create_task(coroutine)
        if pending:
            self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.append(f"task failed: {task.exception()!r}")
        self._changed.set()

    def dispatch(self, handler: Callable[..., None], *args: Any) -> None:
        """A browser event: its handler runs unless the page was unloaded."""
        if self.alive:
            handler(*args)
        self._changed.set()

    def set_timeout(self, delay: float, callback: Callable[[], None]) -> int:
        timer = next(self._timer_ids)

        def fire() -> None:
            del self._timers[timer]
            self._fired.add(timer)
            self.dispatch(callback)

        self._timers[timer] = asyncio.get_running_loop().call_later(delay, fire)
        return timer

    def set_state(self, **values: Any) -> None:
        self.state = replace(self.state, **values)
        self._changed.set()

    def set_messages(self, update: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
        self.set_state(messages=tuple(update([dict(m) for m in self.state.messages])))

    async def fetch(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return await self.http.request(method, f"{next(self._rest_urls)}{path}", json=body)

    # -- App.tsx ----------------------------------------------------------------------------
    def connect_websocket(self, render: Render, custom_session_id: str | None) -> None:
        if render.websocket is not None:
            self.log.append(f"closes {render.websocket!r}")
            render.websocket.close()
            self.set_state(websocket=None)
        self.reconnect_enabled = True
        current = custom_session_id or render.session_id
        if not current:
            return
        self.current_session_id = current
        self.set_state(connection="connecting")
        ws = Socket(self, f"{next(self._socket_urls)}/ws/{current}".replace("http", "ws", 1), current)
        self.sockets.append(ws)
        self.log.append(f"socket {ws.id} opens on {current}")

        def onopen() -> None:
            self.log.append(f"socket {ws.id} open")
            self.set_state(connection="connected", websocket=ws)

        def onclose() -> None:
            self.log.append(f"socket {ws.id} closed")
            self.set_state(connection="disconnected", websocket=None)
            if self.reconnect_enabled:
                # `connectWebSocket` of the render that made this socket; the ref read on firing.
                self.set_timeout(RECONNECT_DELAY, lambda: self.connect_websocket(render, self.current_session_id))

        def onerror() -> None:
            self.set_state(connection="error")

        ws.onopen, ws.onclose, ws.onerror = onopen, onclose, onerror
        ws.onmessage = lambda data: self.handle_websocket_message(json.loads(data))

    def handle_websocket_message(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind in ("stream", "final_stream"):

            def append(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
                if messages and messages[-1]["role"] == "assistant":
                    messages[-1]["content"] += data["content"]
                return messages

            self.set_messages(append)
        elif kind == "tool_call":
            tool = {"role": "tool", "content": f"🔧 {data['tool_name']}", "toolName": data["tool_name"]}
            self.set_messages(lambda messages: [*messages, {**tool, "toolResult": None}])
        elif kind == "tool_result":

            def fill(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
                # Only the last entry, and only when it is this tool's.
                if messages and messages[-1]["role"] == "tool" and messages[-1].get("toolName") == data["tool_name"]:
                    messages[-1]["toolResult"] = data["result"]
                return messages

            self.set_messages(fill)
        elif kind == "final_response_start":
            self.set_messages(lambda messages: [*messages, {"role": "assistant", "content": ""}])
        elif kind == "stream_end":
            self.set_state(is_loading=False)
            self.spawn(self.refresh_conversations())
        elif kind == "error":

            def replace_last(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
                if messages and messages[-1]["role"] == "assistant":
                    messages[-1]["content"] = f"Error: {data['error']}"
                return messages

            self.set_messages(replace_last)
            self.set_state(is_loading=False)

    async def fetch_models(self, render: Render) -> None:
        response = await self.fetch("GET", "/models")
        if response.is_success:
            models = response.json()
            if render.selected_model not in models["models"]:
                self.set_state(selected_model=models["defaultModel"])

    async def refresh_conversations(self) -> None:
        await self.fetch("GET", "/conversations")  # the sidebar's list

    async def create_new_conversation(self, render: Render) -> int:
        new_session_id = "".join(random.choices(string.ascii_lowercase + string.digits, k=9))  # noqa: S311
        response = await self.fetch(
            "POST", "/conversations", {"session_id": new_session_id, "model": render.selected_model}
        )
        if not response.is_success:
            raise PageRefused(f"POST /conversations answered {response.status_code}: {response.text}")
        self.set_state(session_id=new_session_id, messages=())
        self.current_session_id = new_session_id
        self.reconnect_enabled = False
        timer = self.set_timeout(CONNECT_DELAY, lambda: self.connect_websocket(render, new_session_id))
        await self.refresh_conversations()
        return timer

    async def select_conversation(self, render: Render, conversation_id: str) -> tuple[int, dict[str, Any]]:
        response = await self.fetch("GET", f"/conversations/{conversation_id}")
        if not response.is_success:
            raise PageRefused(f"GET /conversations/{conversation_id} answered {response.status_code}")
        conversation = response.json()
        self.set_state(session_id=conversation_id, messages=tuple(conversation.get("messages") or []))
        self.current_session_id = conversation_id
        self.reconnect_enabled = False
        timer = self.set_timeout(CONNECT_DELAY, lambda: self.connect_websocket(render, conversation_id))
        return timer, conversation

    def send_message(self, render: Render, text: str) -> Socket:
        if (
            not text.strip()
            or render.is_loading
            or not render.websocket
            or render.connection != "connected"
            or not render.session_id
        ):
            raise PageRefused(
                f"the page ignores the send (loading {render.is_loading}, socket {render.websocket}, "
                f"connection {render.connection})"
            )
        self.log.append(f"sends on {render.websocket!r}")
        self.set_state(is_loading=True)
        self.set_messages(
            lambda messages: [*messages, {"role": "user", "content": text}, {"role": "assistant", "content": ""}]
        )
        render.websocket.send(json.dumps({"message": text, "model": render.selected_model}))
        return render.websocket

    # -- waiting ----------------------------------------------------------------------------
    async def until(self, predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise PageStuck(f"the page did not get to: {what}\n{self.describe()}")
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    async def until_connected(self, timer: int) -> None:
        """Until the connect `timer` has fired and the page says "connected" (the send button is
        enabled): what a user waits for before typing."""
        await self.until(lambda: timer in self._fired and self.state.connection == "connected", "connected")

    def reconnected(self) -> bool:
        """The page's timers have fired and their sockets are open (or failed)."""
        return not self._timers and all(s.state in (Socket.OPEN, Socket.CLOSED) for s in self.sockets)

    def idle(self) -> bool:
        return (
            self.reconnected()
            and not self._tasks
            and not self.state.is_loading
            and not any(s.mid_turn for s in self.sockets)
        )

    def open_sockets(self, conversation_id: str) -> list[Socket]:
        return [s for s in self.sockets if s.state is Socket.OPEN and s.conversation_id == conversation_id]

    def describe(self) -> str:
        return "\n".join(
            [
                f"state: session {self.state.session_id}, {self.state.connection}, socket {self.state.websocket}, "
                f"loading {self.state.is_loading}; timers pending {len(self._timers)}",
                *(f"  {s!r}: {len(s.received)} frames, mid-turn {s.mid_turn}" for s in self.sockets),
                *self.log[-20:],
            ]
        )

    async def unload(self) -> None:
        self.alive = False
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        await asyncio.gather(*(s.drop() for s in self.sockets))
        for task in list(self._tasks):
            task.cancel()


class FrontendClient:
    """The user at the frontend, on one client (browser, address): `page` is the current page
    load; `reload()` makes a new one."""

    def __init__(self, base_urls: Sequence[str]) -> None:
        self.base_urls = list(base_urls)
        self.http = httpx.AsyncClient(headers={"Origin": ORIGIN, "User-Agent": USER_AGENT}, timeout=10)
        self.page = Page(self.http, self.base_urls)

    async def start(self) -> str:
        """A page load: GET /models, the sidebar's list, and a new conversation (App's mount
        effect); returns once the page is connected. Returns the new conversation's id."""
        page = self.page
        first = page.state
        models = page.spawn(page.fetch_models(first))
        page.spawn(page.refresh_conversations())
        timer = await page.create_new_conversation(first)
        await page.until_connected(timer)
        await models  # the model picker is filled before the user types
        assert page.state.session_id is not None
        return page.state.session_id

    async def new_conversation(self) -> str:
        """The sidebar's "+"."""
        timer = await self.page.create_new_conversation(self.page.state)
        await self.page.until_connected(timer)
        assert self.page.state.session_id is not None
        return self.page.state.session_id

    async def select(self, conversation_id: str) -> dict[str, Any]:
        """A click on a conversation in the sidebar; returns what its GET answered."""
        timer, conversation = await self.page.select_conversation(self.page.state, conversation_id)
        await self.page.until_connected(timer)
        return conversation

    async def send(self, text: str) -> Socket:
        """Typing `text` and pressing Enter; returns the socket the page sent it on."""
        return self.page.send_message(self.page.state, text)

    async def wait_idle(self, timeout: float = WAIT) -> None:
        """Until nothing is pending: the page's timers have fired (the 3 s reconnects included),
        its sockets are open or closed, no reply is loading and no socket is in the middle of a
        turn's events."""
        await self.page.until(self.page.idle, "idle", timeout)

    async def reload(self) -> str:
        """The browser's reload: this page goes, a new one starts on the same client."""
        await self.page.unload()
        self.page = Page(self.http, self.base_urls)
        return await self.start()

    @property
    def messages(self) -> list[dict[str, Any]]:
        """What the user sees."""
        return [dict(m) for m in self.page.state.messages]

    async def close(self) -> None:
        await self.page.unload()
        await self.http.aclose()
