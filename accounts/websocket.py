"""The WebSocket side: who may open a socket (AUTH_MODE) and how many per address
(MAX_CONNECTIONS_PER_ADDRESS). Runs at the handshake, once per socket, never per frame."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings

from accounts.authenticate import identify_scope
from accounts.identity import Refusal
from accounts.limits import connection_acquire, connection_release

logger = logging.getLogger("accounts")
Scope = dict[str, Any]
HTTP_RESPONSE = "websocket.http.response"  # ASGI extension: answer the handshake with a body


class AccessGuard:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        try:
            identity = await identify_scope(scope)
        except Refusal as refusal:
            logger.info(
                "refused socket %s: %s",
                scope.get("path"),
                refusal.status,
                extra={"event": "ws_refused", "status": refusal.status, "client": scope.get("client")},
            )
            await handshake_refuse(scope, receive, send, refusal.status, refusal.detail, code="unauthorized")
            return
        slot = await connection_acquire(identity.address, settings.MAX_CONNECTIONS_PER_ADDRESS)
        if slot is None:
            logger.warning(
                "too many sockets from %s",
                identity.address,
                extra={"event": "ws_connection_limit", "client": identity.address},
            )
            detail = f"Too many open connections from this address (at most {settings.MAX_CONNECTIONS_PER_ADDRESS})."
            await handshake_refuse(scope, receive, send, 429, detail, code="rate_limited")
            return
        try:
            await self.app(dict(scope, identity=identity), receive, send)
        finally:
            await connection_release(slot)


async def handshake_refuse(scope: Scope, receive: Any, send: Any, status: int, detail: str, *, code: str) -> None:
    """Refuse before accepting: with a JSON body where the server supports it (uvicorn), else
    a bare 403 (Daphne); the log has the reason either way."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return  # the client left already
    if HTTP_RESPONSE in scope.get("extensions", {}):
        body = json.dumps({"detail": detail, "code": code}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
        return
    await send({"type": "websocket.close", "code": 1008})
