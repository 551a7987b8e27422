"""Process start and exit: MCP servers start with the process and close before it exits.

uvicorn sends ASGI lifespan events; Daphne (and `runserver`, which is Daphne's) never does, so
under Twisted the same two steps hang on its reactor instead. Both run on the serving loop, so
each MCP server's owner task opens and closes its session on the loop that serves the turns.
Where neither runs (uvicorn with `--lifespan off`), servers start on the first turn, and stdio
servers still die with the process (`tools/mcp/launch.py`).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from tools.mcp.toolset import mcp_shutdown, mcp_start


class LifespanApp:
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                mcp_start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await mcp_shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def twisted_hooks_install() -> None:
    """Under Daphne: start the MCP servers once the reactor runs, close them before it stops."""
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None:  # not under Twisted: uvicorn's lifespan does it
        return
    from twisted.internet.defer import Deferred

    # A delayed call runs on the asyncio loop once it runs (`callWhenRunning` fires before it does).
    reactor.callLater(0, mcp_start)
    # A trigger that returns a Deferred holds the shutdown until it fires.
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: Deferred.fromFuture(asyncio.ensure_future(mcp_shutdown()))
    )
