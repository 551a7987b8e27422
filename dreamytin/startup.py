"""Server start-up: the warm-up begins with the first thing the server hands the app.

uvicorn sends the lifespan `startup` event before it accepts connections; Daphne sends no
lifespan events, so there it begins with the first request (the frontend's first REST call, a
health probe). Importing the app does no work of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from chat.warmup import warmup_start

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class LifespanApp:
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


class WarmUpOnFirstCall:
    """Start the warm-up (in the background) when the server first calls the app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.started = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not self.started:
            self.started = True
            warmup_start()
        await self.app(scope, receive, send)
