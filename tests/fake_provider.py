"""A scripted fake LLM provider: a real HTTP server on 127.0.0.1 that speaks the streaming
formats of OpenAI Chat Completions, Anthropic Messages and Gemini `streamGenerateContent`.

Tests script replies (text, tool calls, errors, cuts, delays) and read back the requests it
received; the real Agents SDK and LiteLLM are pointed at it with base URLs. `bench/` uses it
too.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

_call_ids = itertools.count(1)
STAMP = "@@SENT_AT@@"


@dataclass
class Reply:
    """One scripted answer to one model request."""

    text: list[str] = field(default_factory=list)
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    status: int = 200
    error_body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    ttft: float = 0.0  # seconds before the first chunk
    interval: float = 0.0  # seconds between chunks
    cut_after: int | None = None  # close the connection after this many chunks
    malformed: bool = False  # send a chunk that is not JSON
    usage: tuple[int, int, int] = (12, 7, 0)  # input (incl. cached), output, cached
    stamp: bool = False  # replace STAMP in text pieces with the send time (benchmark)
    finish_reason: str | None = None  # OpenAI format: a finish reason of the server's own
    raw: list[str] | None = None  # send these stream chunks as they are, in place of the rendered ones


def text(*chunks: str, **kwargs: Any) -> Reply:
    return Reply(text=list(chunks), **kwargs)


def tools(*calls: tuple[str, dict[str, Any]], **kwargs: Any) -> Reply:
    return Reply(tool_calls=list(calls), **kwargs)


def error(status: int, message: str = "scripted error", **kwargs: Any) -> Reply:
    return Reply(status=status, error_body={"error": {"message": message, "type": "error", "code": status}}, **kwargs)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float
    closed_early_at: float | None = None  # the client hung up mid-stream


class FakeProvider:
    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[Received] = []
        self.default = Reply(text=["(unscripted reply)"])
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- control --------------------------------------------------------------------------
    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeProvider:
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=2048)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="fake-provider", daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(5)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        current = asyncio.current_task()
        handlers = [task for task in asyncio.all_tasks() if task is not current]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    def reset(self) -> None:
        self.replies.clear()
        self.requests.clear()

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.01)

    # -- HTTP -----------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                method, path, _ = request_line.decode("latin1").split(" ", 2)
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                raw = await reader.readexactly(int(headers.get("content-length", "0")))
                body = json.loads(raw) if raw else {}
                received = Received(method, path, headers, body, time.time())
                self.requests.append(received)
                reply = self.replies.popleft() if self.replies else self.default
                keep = await self._respond(reader, writer, received, reply)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            writer.close()

    async def _respond(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, received: Received, reply: Reply
    ) -> bool:
        if reply.status != 200:
            payload = json.dumps(reply.error_body or {}).encode()
            extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
            writer.write(
                f"HTTP/1.1 {reply.status} Error\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n{extra}\r\n".encode()
                + payload
            )
            await writer.drain()
            return True
        if reply.ttft:
            await asyncio.sleep(reply.ttft)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunks = _render(received, reply)
        try:
            for index, chunk in enumerate(chunks):
                if reply.cut_after is not None and index >= reply.cut_after:
                    writer.transport.abort()
                    return False
                if index and reply.interval:
                    await asyncio.sleep(reply.interval)
                if reply.stamp:
                    chunk = chunk.replace(STAMP, f"{time.time():.6f}")
                data = chunk.encode()
                writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                await writer.drain()
                if writer.transport.is_closing() or reader.at_eof():
                    raise ConnectionResetError  # the client hung up
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except ConnectionError:
            received.closed_early_at = time.time()
            return False
        if writer.transport.is_closing():
            received.closed_early_at = time.time()
            return False
        return True


def _render(received: Received, reply: Reply) -> list[str]:
    if reply.raw is not None:
        return list(reply.raw)
    if received.path.endswith("/messages"):
        chunks = _anthropic(reply)
    elif "generatecontent" in received.path.lower():
        chunks = _gemini(reply)
    else:
        return _openai(reply, received.body.get("model", "fake-model"))
    if reply.malformed:
        chunks.insert(len(reply.text) + 1, "data: {this is not json\n\n")
    return chunks


def _sse(data: dict[str, Any] | str, event: str | None = None) -> str:
    payload = data if isinstance(data, str) else json.dumps(data)
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {payload}\n\n"


def _openai(reply: Reply, model: str) -> list[str]:
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    chunks = [_sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})]
    for piece in reply.text:
        chunks.append(_sse({**base, "choices": [{"index": 0, "delta": {"content": piece}}]}))
    if reply.malformed:
        chunks.append("data: {this is not json\n\n")
    for index, (name, arguments) in enumerate(reply.tool_calls):
        call = {
            "index": index,
            "id": f"call_{next(_call_ids)}_{name}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)},
        }
        chunks.append(_sse({**base, "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}))
    finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
    chunks.append(_sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}))
    prompt, completion, cached = reply.usage
    chunks.append(
        _sse(
            {
                **base,
                "choices": [],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                    "prompt_tokens_details": {"cached_tokens": cached},
                },
            }
        )
    )
    chunks.append("data: [DONE]\n\n")
    return chunks


def _anthropic(reply: Reply) -> list[str]:
    prompt, completion, cached = reply.usage
    chunks = [
        _sse(
            {
                "type": "message_start",
                "message": {
                    "id": "msg_fake",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-fake",
                    "content": [],
                    "stop_reason": None,
                    "usage": {"input_tokens": prompt - cached, "cache_read_input_tokens": cached, "output_tokens": 1},
                },
            },
            "message_start",
        )
    ]
    index = 0
    if reply.text:
        chunks.append(
            _sse(
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                "content_block_start",
            )
        )
        for piece in reply.text:
            chunks.append(
                _sse(
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
                    "content_block_delta",
                )
            )
        chunks.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
        index = 1
    for offset, (name, arguments) in enumerate(reply.tool_calls):
        block = index + offset
        chunks.append(
            _sse(
                {
                    "type": "content_block_start",
                    "index": block,
                    "content_block": {
                        "type": "tool_use",
                        "id": f"toolu_{next(_call_ids)}_{name}",
                        "name": name,
                        "input": {},
                    },
                },
                "content_block_start",
            )
        )
        chunks.append(
            _sse(
                {
                    "type": "content_block_delta",
                    "index": block,
                    "delta": {"type": "input_json_delta", "partial_json": json.dumps(arguments)},
                },
                "content_block_delta",
            )
        )
        chunks.append(_sse({"type": "content_block_stop", "index": block}, "content_block_stop"))
    stop = "tool_use" if reply.tool_calls else "end_turn"
    chunks.append(
        _sse(
            {"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": completion}},
            "message_delta",
        )
    )
    chunks.append(_sse({"type": "message_stop"}, "message_stop"))
    return chunks


def _gemini(reply: Reply) -> list[str]:
    prompt, completion, cached = reply.usage
    chunks = []
    for piece in reply.text:
        chunks.append(_sse({"candidates": [{"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}]}))
    if reply.tool_calls:
        parts = [{"functionCall": {"name": name, "args": arguments}} for name, arguments in reply.tool_calls]
        chunks.append(_sse({"candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}]}))
    chunks.append(
        _sse(
            {
                "candidates": [
                    {"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP", "index": 0}
                ],
                "usageMetadata": {
                    "promptTokenCount": prompt,
                    "candidatesTokenCount": completion,
                    "totalTokenCount": prompt + completion,
                    "cachedContentTokenCount": cached,
                },
            }
        )
    )
    return chunks
