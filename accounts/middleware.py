"""The REST side: who may call (AUTH_MODE) and how often (RATE_LIMIT_REQUESTS)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from accounts.authenticate import identify_request
from accounts.guessing import guess_failed, guessing_refused
from accounts.identity import Refusal, client_address
from accounts.limits import rate_hit
from dreamytin.middleware import AsyncMiddleware, json_error

logger = logging.getLogger("accounts")
# Probes call /health with no credentials; it says up or down and nothing else. /metrics has its
# own access rule (loopback or METRICS_TOKEN: observability.views).
OPEN_PATHS = frozenset({"/health", "/metrics"})
# The admin has its own login, and in django mode it is where users log in.
OWN_LOGIN_PREFIXES = ("/admin/",)
ADMIN_LOGIN = "/admin/login/"


class AccessMiddleware(AsyncMiddleware):
    async def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path in OPEN_PATHS:
            return await self.get_response(request)
        if settings.AUTH_MODE != "none" and request.path.startswith(OWN_LOGIN_PREFIXES):
            if request.path == ADMIN_LOGIN and request.method == "POST":
                return await self._admin_login(request)
            return await self.get_response(request)
        try:
            identity = await identify_request(request)
        except Refusal as refusal:
            logger.info(
                "refused %s %s: %s",
                request.method,
                request.path,
                refusal.status,
                extra={"event": "http_refused", "status": refusal.status, "client": request.META.get("REMOTE_ADDR")},
            )
            if refusal.status == 429:
                return _too_many(refusal.detail, refusal.retry_after or 1.0)
            response = json_error(refusal.status, refusal.detail, code="unauthorized")
            if refusal.status == 401:
                response["WWW-Authenticate"] = 'Bearer realm="dreamytin"'
            return response
        request.identity = identity  # type: ignore[attr-defined]
        verdict = await rate_hit("requests", identity.limit_key, settings.RATE_LIMIT_REQUESTS)
        if not verdict.allowed:
            return _too_many(f"Too many requests; retry in {verdict.retry_after:.0f} seconds.", verdict.retry_after)
        return await self.get_response(request)

    async def _admin_login(self, request: HttpRequest) -> HttpResponse:
        """The admin's login form, with failed attempts counted per address and user name
        (accounts.guessing). Django answers a failed login with the form again (200) and a
        successful one with a redirect; a refused CSRF token (403) is no guess."""
        address = client_address((request.META.get("REMOTE_ADDR"),))
        username = request.POST.get("username") or None
        verdict = await guessing_refused(address=address, username=username)
        if not verdict.allowed:
            logger.warning(
                "admin login refused: too many failures",
                extra={"event": "login_guessing", "client": request.META.get("REMOTE_ADDR")},
            )
            return _too_many(
                f"Too many failed logins; retry in {verdict.retry_after:.0f} seconds.", verdict.retry_after
            )
        response = await self.get_response(request)
        if response.status_code == 200:
            await guess_failed(address=address, username=username)
        return response


def _too_many(detail: str, retry_after: float) -> HttpResponse:
    response = json_error(429, detail, code="rate_limited", retry_after=retry_after)
    response["Retry-After"] = str(int(retry_after))
    return response
