"""Identify an HTTP request or a WebSocket handshake by AUTH_MODE (accounts.identity)."""

from __future__ import annotations

from typing import Any

from channels.auth import get_user
from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest
from django.http.cookie import parse_cookie
from django.utils.module_loading import import_string

from accounts.guessing import guess_failed, guessing_refused
from accounts.identity import (
    FORWARDED_HEADERS,
    UNAUTHORIZED,
    Identity,
    Refusal,
    client_address,
    credentials,
    is_loopback,
    local_only,
    shared_token_valid,
)
from accounts.tokens import token_find
from chat.store.db import db_async

atoken_find = db_async(token_find)


async def identify_request(request: HttpRequest) -> Identity:
    headers = {name.lower(): value for name, value in request.headers.items()}
    address = client_address((request.META.get("REMOTE_ADDR"),))
    if settings.AUTH_MODE == "none":
        local_only(address, headers)
        return Identity(address=address)
    presented, _ = credentials(headers, [])
    await _not_guessing(address, presented)
    if settings.AUTH_MODE == "token":
        if not shared_token_valid(presented):
            await _token_failed(address, presented)
            raise Refusal(401, UNAUTHORIZED)
        return Identity(address=address)
    token = await atoken_find(presented) if presented is not None else None
    user = token.user if token is not None else None if presented is not None else await request.auser()
    if user is None or not user.is_authenticated:
        await _token_failed(address, presented)
        raise Refusal(401, UNAUTHORIZED + " Or log in at /admin/.")
    return Identity(address=address, user_id=user.pk)


async def _not_guessing(address: str, presented: str | None) -> None:
    """A token from an address that sent too many bad ones lately is not even looked at."""
    if presented is None:
        return
    verdict = await guessing_refused(address=address)
    if not verdict.allowed:
        raise Refusal(
            429,
            f"Too many invalid credentials from this address; retry in {verdict.retry_after:.0f} seconds.",
            retry_after=verdict.retry_after,
        )


async def _token_failed(address: str, presented: str | None) -> None:
    if presented is not None:  # no credentials at all is not a guess
        await guess_failed(address=address)


async def health_details_allowed(request: HttpRequest) -> bool:
    """`/health` is open to probes; its details (MCP servers, their errors) only to a caller
    this server would serve, or to one on its own machine that came through no proxy."""
    headers = {name.lower(): value for name, value in request.headers.items()}
    if is_loopback(client_address((request.META.get("REMOTE_ADDR"),))) and not FORWARDED_HEADERS & headers.keys():
        return True
    try:
        await identify_request(request)
    except Refusal:
        return False
    return True


async def identify_scope(scope: dict[str, Any]) -> Identity:
    headers = {bytes(name).decode("latin1").lower(): bytes(value).decode("latin1") for name, value in scope["headers"]}
    address = client_address(scope.get("client"))
    if settings.AUTH_MODE == "none":
        local_only(address, headers)
        return Identity(address=address)
    presented, via_subprotocol = credentials(headers, list(scope.get("subprotocols") or []))
    await _not_guessing(address, presented)
    if settings.AUTH_MODE == "token":
        if not shared_token_valid(presented):
            await _token_failed(address, presented)
            raise Refusal(401, UNAUTHORIZED)
        return Identity(address=address, via_subprotocol=via_subprotocol)
    token = await atoken_find(presented) if presented is not None else None
    user = token.user if token is not None else None if presented is not None else await _session_user(headers)
    if user is None or not user.is_authenticated:
        await _token_failed(address, presented)
        raise Refusal(401, UNAUTHORIZED)
    return Identity(
        address=address, user_id=user.pk, token_id=token.pk if token else None, via_subprotocol=via_subprotocol
    )


async def _session_user(headers: dict[str, str]) -> Any:
    """The user of the admin's session cookie. (Only once, at the handshake: Channels' session
    and auth middleware would wrap every frame the socket sends.) A cross-site page cannot
    use the cookie: the origin check runs first."""
    session_key = parse_cookie(headers.get("cookie", "")).get(settings.SESSION_COOKIE_NAME)
    if not session_key:
        return None
    store: type[SessionBase] = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    return await get_user({"session": store(session_key=session_key)})
