"""The REST side: who may call (AUTH_MODE) and how often (RATE_LIMIT_REQUESTS)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from accounts.authenticate import identify_request
from accounts.identity import Refusal
from accounts.limits import rate_hit
from dreamytin.middleware import AsyncMiddleware, json_error

logger = logging.getLogger("accounts")
# Probes call /health with no credentials; it says up or down and nothing else. /metrics has its
# own access rule (loopback or METRICS_TOKEN: observability.views).
OPEN_PATHS = frozenset({"/health", "/metrics"})
# The admin has its own login, and in django mode it is where users log in.
OWN_LOGIN_PREFIXES = ("/admin/",)


class AccessMiddleware(AsyncMiddleware):
    async def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path in OPEN_PATHS:
            return await self.get_response(request)
        if settings.AUTH_MODE != "none" and request.path.startswith(OWN_LOGIN_PREFIXES):
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
            response = json_error(refusal.status, refusal.detail, code="unauthorized")
            if refusal.status == 401:
                response["WWW-Authenticate"] = 'Bearer realm="dreamytin"'
            return response
        request.identity = identity  # type: ignore[attr-defined]
        verdict = await rate_hit("requests", identity.limit_key, settings.RATE_LIMIT_REQUESTS)
        if not verdict.allowed:
            response = json_error(
                429,
                f"Too many requests; retry in {verdict.retry_after:.0f} seconds.",
                code="rate_limited",
                retry_after=verdict.retry_after,
            )
            response["Retry-After"] = str(int(verdict.retry_after))
            return response
        return await self.get_response(request)
