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
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from channels.db import DatabaseSyncToAsync
from django.conf import settings

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
