"""Process start and exit: the warm-up begins and MCP servers start when the server starts;
running turns drain and MCP servers close before it exits.

uvicorn sends ASGI lifespan events; Daphne (and `runserver`, which is Daphne's) never does, so
under Twisted the same two steps hang on its reactor instead. Both run on the serving loop, so
each MCP server's owner task opens and closes its session on the loop that serves the turns.
Where neither runs (uvicorn with `--lifespan off`), MCP servers start on the first turn, stdio
servers still die with the process (`tools/mcp/launch.py`), and the first turn pays for the
warm-up. Importing the app does no work of its own.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from chat.retention import retention_start
from chat.titles import titles_settle
from chat.turn import turns_closed, turns_started, turns_stopping
from chat.warmup import warmup_start
from dreamytin.environment import environ_scrub
from tools.mcp.toolset import mcp_shutdown, mcp_start
from webhooks.sender import webhooks_start

# Seconds a stopping process lets the titles being made finish.
TITLES_SETTLE_SECONDS = 5.0


def process_started() -> None:
    """On the serving loop, once it runs."""
    environ_scrub()  # before any MCP server starts: no child can read the keys (dreamytin/environment.py)
    warmup_start()  # in the background: the server answers meanwhile
    mcp_start()
    turns_started()  # ends the turns of workers that died
    retention_start()  # deletes conversations untouched for RETENTION_DAYS
    webhooks_start()  # delivers the turns' webhook events (WEBHOOK_URLS)


async def process_stopping() -> None:
    """On the serving loop, once its sockets are closed."""
    await turns_stopping()  # lets the running turns end, or ends them as interrupted
    await titles_settle(TITLES_SETTLE_SECONDS)  # the titles their ends asked for
    await turns_closed()  # the relay, the reaper, the provider clients
    await mcp_shutdown()


class LifespanApp:
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                process_started()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await process_stopping()
                await send({"type": "lifespan.shutdown.complete"})
                return


def twisted_hooks_install() -> None:
    """Under Daphne: start once the reactor runs, drain turns and close the MCP servers before
    it stops."""
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None:  # not under Twisted: uvicorn's lifespan does it
        return
    from twisted.internet.defer import Deferred

    # A delayed call runs on the asyncio loop once it runs (`callWhenRunning` fires before it does).
    reactor.callLater(0, process_started)
    # A trigger that returns a Deferred holds the shutdown until it fires.
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: Deferred.fromFuture(asyncio.ensure_future(process_stopping()))
    )
