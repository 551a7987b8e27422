"""How async code reaches the ORM.

SQLite takes one writer at a time, so a process runs all of its chat database work on one
thread of its own that keeps one connection open. Opening a connection per call costs about
0.6 ms of CPU, because Django registers its SQL functions and SQLite reads the schema. Several
threads also contend for the write lock, and a waiting writer sleeps in SQLite's backoff (up to
100 ms) rather than queueing. The call runs in that thread's own context, not the caller's,
because Django keeps a connection per context.

PostgreSQL serves concurrent callers, so calls run on the default thread pool, and each borrows
a connection from Django's psycopg pool. Channels' wrapper returns the connection after every
call: it is thread-sensitive by default, which would queue every call from every connection on
one thread, so it is used with `thread_sensitive=False`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, ParamSpec, TypeVar

from channels.db import DatabaseSyncToAsync
from django.conf import settings
from django.db import transaction

P = ParamSpec("P")
R = TypeVar("R")

_sqlite_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")


def _on_sqlite() -> bool:
    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"


def db_async(func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    pooled = DatabaseSyncToAsync(func, thread_sensitive=False)

    @functools.wraps(func)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        if _on_sqlite():
            return await asyncio.get_running_loop().run_in_executor(
                _sqlite_thread, functools.partial(func, *args, **kwargs)
            )
        return await pooled(*args, **kwargs)

    return call


class db_batched(Generic[R]):
    """As `db_async`, for a write that many callers make at about the same time (every running
    turn's flush: their heartbeats fall on one tick). The calls that arrive while a batch is
    being written wait and go together in the next one: one trip to the database thread and one
    transaction instead of one each. `func` must not open a transaction of its own: it runs in
    the batch's (or, alone, in one of its own). A batch in which a call fails is undone and
    written again call by call, each in its own transaction, so one caller's failure is its
    own. A savepoint per call instead cost two statements each (SAVEPOINT, RELEASE) and Django's
    bookkeeping: about a tenth of the database thread's time at 200 streams."""

    def __init__(self, func: Callable[..., R]) -> None:
        self.func = func
        self.write = db_async(self._write_all)
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue[R]] = weakref.WeakKeyDictionary()
        functools.update_wrapper(self, func)

    async def __call__(self, **kwargs: Any) -> R:
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _Queue()
        future: asyncio.Future[R] = loop.create_future()
        queue.calls.append((kwargs, future))
        if queue.writer is None:
            queue.writer = loop.create_task(self._drain(queue))
        return await future

    async def _drain(self, queue: _Queue[R]) -> None:
        try:
            while queue.calls:
                batch, queue.calls = queue.calls, []
                try:
                    outcomes = await self.write([kwargs for kwargs, _ in batch])
                except BaseException as exc:  # the transaction failed, or the loop is closing
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    raise
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue  # its caller was cancelled; the write happened regardless
                    if isinstance(outcome, _Failed):
                        future.set_exception(outcome.exc)
                    else:
                        future.set_result(outcome)
        finally:
            queue.writer = None

    def _write_all(self, calls: list[dict[str, Any]]) -> list[R | _Failed]:
        if len(calls) == 1:
            with transaction.atomic():
                return [self.func(**calls[0])]
        with contextlib.suppress(Exception):  # a call failed and the batch was undone: each on its own
            with transaction.atomic():
                return [self.func(**kwargs) for kwargs in calls]
        outcomes: list[R | _Failed] = []
        for kwargs in calls:
            try:
                with transaction.atomic():
                    outcomes.append(self.func(**kwargs))
            except Exception as exc:  # noqa: BLE001 (its transaction was rolled back; the others stand)
                outcomes.append(_Failed(exc))
        return outcomes


class _Failed:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc


class _Queue(Generic[R]):
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], asyncio.Future[R]]] = []
        self.writer: asyncio.Task[None] | None = None
