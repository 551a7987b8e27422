"""The WebSocket side: who may open a socket (AUTH_MODE) and how many per address
(MAX_CONNECTIONS_PER_ADDRESS). Runs at the handshake, once per socket, never per frame."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

from accounts.authenticate import identify_scope
from accounts.identity import Refusal, address_group
from accounts.limits import connection_acquire, connection_release

logger = logging.getLogger("accounts")
Scope = dict[str, Any]


class AccessGuard:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        try:
            identity = await identify_scope(scope)
        except Refusal as refusal:
            logger.info(
                "refused socket %s (%s): %s",
                scope.get("path"),
                refusal.status,
                refusal.detail,
                extra={"event": "ws_refused", "status": refusal.status, "client": scope.get("client")},
            )
            await handshake_refuse(receive, send)
            return
        slot = await connection_acquire(address_group(identity.address), settings.MAX_CONNECTIONS_PER_ADDRESS)
        if slot is None:
            logger.warning(
                "too many sockets from %s (MAX_CONNECTIONS_PER_ADDRESS=%s)",
                identity.address,
                settings.MAX_CONNECTIONS_PER_ADDRESS,
                extra={"event": "ws_connection_limit", "client": identity.address},
            )
            await handshake_refuse(receive, send)
            return
        try:
            await self.app(dict(scope, identity=identity), receive, send)
        finally:
            await connection_release(slot)


async def handshake_refuse(receive: Any, send: Any) -> None:
    """Refuse before accepting: both servers answer the handshake with HTTP 403, and the log
    line before it says why. (uvicorn could send a JSON body through the ASGI
    `websocket.http.response` extension, but 0.54 then logs "ASGI callable returned without
    completing handshake" as an ERROR for every refusal: a log flood an attacker controls.)"""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 1008})
