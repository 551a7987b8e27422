"""The WebSocket handshake's origin check (cross-site WebSocket hijacking).

Channels' `AllowedHostsOriginValidator` refuses clients that send no `Origin`; the contract
admits them (they are not browsers, so there is no ambient cookie to hijack). Its host rule
also ignores the port, so any page on `localhost` (every local dev server) passed: here an
origin passes when it is configured, or when it is this server's own page (the origin's host
and port are the handshake's `Host`, and that host is in ALLOWED_HOSTS).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from chat.routing import PathRefused

Scope = dict[str, Any]


class OriginCheckMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        origin = _header(scope, b"origin")
        if origin is not None and not origin_allowed(origin, host=_header(scope, b"host")):
            await PathRefused()(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", []):
        if name == wanted:
            return bytes(value).decode("latin1")
    return None


def origin_allowed(origin: str, *, host: str | None) -> bool:
    if origin in settings.CORS_ALLOWED_ORIGINS:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or host is None:
        return False
    if _with_port(parts.netloc, parts.scheme) != _with_port(host, parts.scheme):
        return False  # another site, or another port of this host
    domain, _port = split_domain_port(parts.netloc)
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


def _with_port(netloc: str, scheme: str) -> str:
    """`host:port` with the scheme's default port spelled out, lower-cased."""
    domain, port = split_domain_port(netloc.lower())
    return f"{domain}:{port or ('443' if scheme == 'https' else '80')}"
