"""How async code reaches the ORM.

Channels' `database_sync_to_async` is thread-sensitive: every call from every connection runs
on one thread, so two hundred turns starting together queue behind each other (the benchmark
showed a quarter of a second at fifty). Our service functions are self-contained units of work
(each its own transaction), so they run on the default thread pool instead. Channels' wrapper
still closes obsolete connections before and after every call (on PostgreSQL, "closing"
returns the connection to the pool).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from channels.db import DatabaseSyncToAsync


def db_async(func: Callable[..., Any]) -> Any:
    return DatabaseSyncToAsync(func, thread_sensitive=False)
