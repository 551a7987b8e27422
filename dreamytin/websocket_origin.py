"""The WebSocket handshake's origin check (cross-site WebSocket hijacking).

Channels' `AllowedHostsOriginValidator` refuses clients that send no `Origin`; the contract
admits them (they are not browsers, so there is no ambient cookie to hijack).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

Scope = dict[str, Any]


class OriginCheckMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        origin = _origin(scope)
        if origin is not None and not origin_allowed(origin):
            await WebsocketDenier()(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _origin(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"origin":
            return bytes(value).decode("latin1")
    return None


def origin_allowed(origin: str) -> bool:
    if origin in settings.CORS_ALLOWED_ORIGINS:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    host, _port = split_domain_port(parts.netloc)
    return bool(host) and validate_host(host, settings.ALLOWED_HOSTS)
