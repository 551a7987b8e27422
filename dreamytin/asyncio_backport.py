"""Python 3.12's `asyncio.wait_for` on Python 3.11, where the stock one can lose a cancel.

On 3.11, a task cancelled while `wait_for` waits keeps running when the awaited operation ends
in the same step of the loop: `wait_for` sees it done and returns its result, dropping the
cancel (CPython gh-86296, fixed in 3.12 by building `wait_for` on `asyncio.timeout`).
redis-py sends every command under `wait_for(..., socket_timeout)`, and a socket write ends
at once, so many a cancel that landed on a Redis command was lost: the relay's writer
then never stopped and a stopping server hung (`dreamytin/startup.py`), and a consumer or a
turn cancelled mid-command would go on. Installed when the project package is imported, before
any server, command or test runs; a no-op on 3.12 and later.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

_stock_wait_for = asyncio.wait_for


async def wait_for(fut: Awaitable[T], timeout: float | None) -> T:  # noqa: ASYNC109 - asyncio's signature
    """3.12's: under `asyncio.timeout`, in the calling task, so a cancel always propagates."""
    if timeout is not None and timeout <= 0:
        # The same in both: a done operation's result, else it is cancelled and TimeoutError.
        return await _stock_wait_for(fut, timeout)
    async with asyncio.timeout(timeout):
        return await fut


def wait_for_install() -> None:
    if sys.version_info < (3, 12):
        asyncio.wait_for = asyncio.tasks.wait_for = wait_for  # type: ignore[assignment]
