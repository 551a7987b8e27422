"""The launcher caps a stdio server's messages (MCP_MAX_RESULT_BYTES): a result over the cap is a
failed result at once, never read whole nor parsed by the worker, and the server serves on."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import tracemalloc

import pytest
from django.test import override_settings

from tests.fake_provider import text, tools
from tests.tools.mcp.conftest import server_of, stdio_entry
from tools.mcp.launch import relay, request_id

MIB = 1024 * 1024


async def with_loop_lag(work) -> tuple[object, float]:
    """`work`'s result, and the longest the event loop was kept from a 10 ms timer meanwhile."""
    worst = 0.0
    done = asyncio.Event()

    async def tick() -> None:
        nonlocal worst
        while not done.is_set():
            before = time.monotonic()
            await asyncio.sleep(0.01)
            worst = max(worst, time.monotonic() - before - 0.01)

    ticker = asyncio.create_task(tick())
    try:
        return await work, worst
    finally:
        done.set()
        await ticker


async def test_a_result_over_the_cap_fails_quickly_with_the_loop_free_and_the_server_serves_on(mcp):
    with mcp(test=stdio_entry()), override_settings(MCP_MAX_RESULT_BYTES=MIB):
        server = server_of("test")
        pid = (await server.call("server_pid", {})).content
        tracemalloc.start()
        try:
            started = time.monotonic()
            result, lag = await with_loop_lag(server.call("big", {"mebibytes": 100}))
            elapsed = time.monotonic() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        after = await server.call("server_pid", {})
        small = await server.call("big", {"mebibytes": 0.25})
    assert result.ok is False
    assert "returned too much" in result.content and "MCP_MAX_RESULT_BYTES" in result.content
    assert str(MIB) in result.content
    assert elapsed < 10, elapsed  # the server's own time to build 100 MiB; nothing waits for MCP_TIMEOUT
    assert lag < 0.5, f"the event loop was blocked for {lag:.2f} s"
    assert peak < 8 * MIB, f"{peak / MIB:.1f} MiB held for a 100 MiB result"
    assert after.ok is True and after.content == pid  # the same server, not a restarted one
    assert small.ok is True and small.content.startswith("x")  # under the cap: passed on


@pytest.mark.django_db(transaction=True)
async def test_the_model_reads_why_a_result_was_refused_and_the_turn_goes_on(ws, provider, mcp):
    with mcp(test=stdio_entry()), override_settings(MCP_MAX_RESULT_BYTES=MIB):
        provider.script(tools(("big", {"mebibytes": 3})), text("Too big, then."))
        events = await ws.turn("give me everything")
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["ok"] is False and "MCP_MAX_RESULT_BYTES" in result["result"]
    sent = [m["content"] for m in provider.requests[1].body["messages"] if m["role"] == "tool"]
    assert "returned too much" in sent[0]
    assert events[-1]["finish_reason"] == "stop" and events[-2]["content"] == "Too big, then."


def relayed(data: bytes, limit: int) -> bytes:
    source_read, source_write = os.pipe()
    target_read, target_write = os.pipe()

    def feed() -> None:
        with os.fdopen(source_write, "wb") as writer:
            writer.write(data)

    def drain(out: list[bytes]) -> None:
        with os.fdopen(target_read, "rb") as reader:
            out.append(reader.read())

    out: list[bytes] = []
    threads = [threading.Thread(target=feed), threading.Thread(target=drain, args=(out,))]
    for thread in threads:
        thread.start()
    relay(source_read, target_write, limit)
    os.close(source_read)
    os.close(target_write)
    for thread in threads:
        thread.join(10)
    return out[0]


def test_relay_passes_lines_under_the_cap_and_answers_one_over_it_with_an_error_for_its_id():
    small = b'{"jsonrpc":"2.0","id":1,"result":{"x":"' + b"a" * 50 + b'"}}'
    big = b'{"result":{"content":[{"id":9,"text":"' + b"b" * 500_000 + b'"}]},"jsonrpc":"2.0","id":7}'
    first = b'{"jsonrpc":"2.0","id":"r-8","result":{"text":"' + b"b" * 500_000 + b'","id":9}}'
    notice = b'{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"' + b"c" * 500_000 + b'"}}'
    lines = relayed(b"\n".join([small, big, first, notice, small]) + b"\n", limit=1000).splitlines()
    assert lines[0] == small and lines[-1] == small
    assert len(lines) == 4  # the notice had no id to answer: dropped
    errors = [json.loads(line) for line in lines[1:3]]
    assert [error["id"] for error in errors] == [7, "r-8"]  # its id last (TypeScript SDK), or first
    assert errors[0]["error"]["code"] == -32050
    assert f"more than 1000 bytes ({len(big)} bytes)" in errors[0]["error"]["message"]


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b'{"jsonrpc": "2.0", "id": "req-1", "result": {', "req-1"),
        (b'{"result": {"id": 3, "items": [{"id": 4}]}, "id": 12, "jsonrpc"', 12),
        (b'{"result": {"text": "a \\"id\\": 5 inside"}, "id": 6}', 6),
        (b'{"jsonrpc": "2.0", "result": {"text": "xxxx', None),
        (b'{"id": true}', None),
    ],
)
def test_request_id_is_the_top_level_one(head, expected):
    assert request_id(head) == expected
    assert request_id(b"", tail=head) == (expected if head.endswith(b"}") else None)
