"""A cancelled task stops, even when what it waited for under `asyncio.wait_for` ended in the
same step of the loop (on Python 3.11 the stock `wait_for` returned its result instead), and
so a Redis command, sent under `wait_for`, never loses a cancel."""

from __future__ import annotations

import asyncio

import pytest
from django.conf import settings
from redis import asyncio as aioredis


def test_a_cancel_is_kept_when_the_awaited_operation_ends_in_the_same_step():
    async def scenario() -> None:
        written = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(asyncio.wait_for(written, 5))
        await asyncio.sleep(0)  # the task waits
        written.set_result("written")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_wait_for_still_times_out_and_returns():
    async def scenario() -> None:
        assert await asyncio.wait_for(asyncio.sleep(0, "done"), 1) == "done"
        assert await asyncio.wait_for(asyncio.sleep(0, "no limit"), None) == "no limit"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(5), 0.01)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(5), 0)

    asyncio.run(scenario())


@pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis (REDIS_URL)")
def test_a_task_writing_to_redis_stops_at_every_cancel():
    """As the relay's writer is cancelled at shutdown, at points spread over its writes (before,
    130 of these 200 cancels were lost, and a stopping server waited for its writer for ever)."""

    async def scenario() -> list[int]:
        client = aioredis.Redis(
            connection_pool=aioredis.BlockingConnectionPool.from_url(settings.REDIS_URL, timeout=5, socket_timeout=5)
        )
        kept_running: list[int] = []
        try:
            for attempt in range(200):
                stop = asyncio.Event()  # ends a task whose cancel was lost

                async def write_forever(stop: asyncio.Event = stop) -> None:
                    while not stop.is_set():
                        await client.xadd("tests:cancel", {"n": 1}, maxlen=10, approximate=True)

                task = asyncio.create_task(write_forever())
                await asyncio.sleep(attempt % 20 / 10_000)
                task.cancel()
                done, _ = await asyncio.wait([task], timeout=1)
                if not done:
                    kept_running.append(attempt)
                    stop.set()
                    await asyncio.wait([task])
        finally:
            await client.delete("tests:cancel")
            await client.aclose()
        return kept_running

    assert asyncio.run(scenario()) == []
