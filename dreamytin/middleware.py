"""HTTP middleware: one log line per request, and JSON errors in every DEBUG setting."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger("dreamytin.request")

Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


class AsyncMiddleware:
    """Async-only middleware base: Django adapts the sync test client to it."""

    async_capable = True
    sync_capable = False

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response
        if iscoroutinefunction(self.get_response):
            markcoroutinefunction(self)


class RequestLogMiddleware(AsyncMiddleware):
    async def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = await self.get_response(request)
        logger.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "event": "http_request",
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "client": request.META.get("REMOTE_ADDR"),
            },
        )
        return response


class JsonErrorMiddleware(AsyncMiddleware):
    """Turn any non-JSON error page (Django's 404/500 pages, DEBUG's technical pages, a bare 405)
    into the contract's `{"detail": ...}` body, keeping the status code."""

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        response = await self.get_response(request)
        if response.status_code < 400 or request.path.startswith("/admin/"):
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        replaced = json_error(response.status_code, _detail(response))
        if response.has_header("Allow"):  # RFC 9110: a 405 must say which methods are allowed
            replaced["Allow"] = response["Allow"]
        return replaced


class JsonBodyMiddleware(AsyncMiddleware):
    """Request bodies of the API must be JSON (415 otherwise; a request with no body is left to
    the view, which refuses a missing one with a 400). A cross-site page can send a
    form or `text/plain` body without a CORS preflight; `application/json` needs one, which
    only the configured origins pass. The admin's forms have Django's CSRF protection."""

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        if _has_body(request) and not request.path.startswith("/admin/"):
            content_type = request.content_type or ""
            if content_type != "application/json":
                return json_error(
                    415,
                    f"Unsupported media type {content_type or '(none)'!r}: send application/json.",
                    code="unsupported_media_type",
                )
        return await self.get_response(request)


def _has_body(request: HttpRequest) -> bool:
    length = request.META.get("CONTENT_LENGTH") or "0"
    return "HTTP_TRANSFER_ENCODING" in request.META or not length.isdigit() or int(length) > 0


def _detail(response: HttpResponse) -> str:
    phrase = HTTPStatus(response.status_code).phrase
    if response.status_code == HTTPStatus.METHOD_NOT_ALLOWED and response.has_header("Allow"):
        return f"{phrase}: allowed methods are {response['Allow']}"
    return phrase


def json_error(status: int, detail: str, **extra: object) -> JsonResponse:
    return JsonResponse({"detail": detail, **extra}, status=status, json_dumps_params={"ensure_ascii": False})
