"""An HTTP client of the app in this process that reads a server-sent-events response as it
streams, event by event, and can hang up mid-stream (as a browser tab closing)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from channels.testing import ApplicationCommunicator

from dreamytin.asgi import application


class SseResponse:
    def __init__(self, communicator: ApplicationCommunicator, status: int, headers: dict[str, str]) -> None:
        self.communicator = communicator
        self.status = status
        self.headers = headers
        self.buffer = ""
        self.body = b""
        self.finished = False
        self.comments = 0

    async def _more(self, timeout: float) -> None:
        message = await self.communicator.receive_output(timeout)
        assert message["type"] == "http.response.body"
        self.body += message.get("body", b"")
        self.buffer += message.get("body", b"").decode()
        self.finished = not message.get("more_body", False)
        if self.finished:
            await self.communicator.wait(timeout)

    async def next_event(self, timeout: float = 20) -> dict[str, Any] | None:
        """The next event as `{"id", "event", "data"}` (data parsed), None once the body ended."""
        while "\n\n" not in self.buffer:
            if self.finished:
                return None
            await self._more(timeout)
        block, self.buffer = self.buffer.split("\n\n", 1)
        if block.startswith(":"):
            self.comments += 1
            return await self.next_event(timeout)
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        return {"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])}

    async def until_end(self, timeout: float = 20) -> list[dict[str, Any]]:
        events = []
        while (event := await self.next_event(timeout)) is not None:
            events.append(event)
        return events

    async def json(self, timeout: float = 10) -> Any:
        while not self.finished:
            await self._more(timeout)
        return json.loads(self.body)

    async def hang_up(self) -> None:
        await self.communicator.send_input({"type": "http.disconnect"})
        await self.communicator.wait(timeout=5)


async def request(
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    client: tuple[str, int] = ("127.0.0.1", 50000),
) -> SseResponse:
    """Send the request; the response's status and headers are read, its body as it comes."""
    raw = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body or b""
    path, _, query = path.partition("?")
    all_headers = {"content-type": "application/json", **(headers or {})} if raw else dict(headers or {})
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(b"host", b"testserver")]
        + [(name.lower().encode(), value.encode()) for name, value in all_headers.items()]
        + ([(b"content-length", str(len(raw)).encode())] if raw else []),
        "client": client,
        "server": ("testserver", 80),
    }
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": raw, "more_body": False})
    start = await communicator.receive_output(20)
    assert start["type"] == "http.response.start", start
    names = {bytes(name).decode().lower(): bytes(value).decode() for name, value in start["headers"]}
    return SseResponse(communicator, start["status"], names)


def sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The events of a real server's response, read line by line (`httpx`'s `iter_lines`)."""
    fields: dict[str, str] = {}
    for line in lines:
        if line:
            if not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
            continue
        if fields:
            yield {"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])}
            fields = {}
