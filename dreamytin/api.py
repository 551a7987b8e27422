"""The REST API (django-ninja): one error handler maps every failure to `{"detail": ...}`."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import NinjaAPI
from ninja.errors import HttpError, ValidationError

import dreamytin
from accounts.authenticate import health_details_allowed
from chat.api import router as chat_router
from chat.archive.api import router as archive_router
from chat.exceptions import ChatError
from chat.http_turns import router as turns_router
from chat.warmup import warmup_state
from dreamytin.health import health_check, services_public
from dreamytin.middleware import json_error
from tools.api import router as tools_router

api = NinjaAPI(
    title="DreamyTin backend",
    version=dreamytin.__version__,
    description="REST part of the DreamyTin wire contract; the WebSocket protocol is in docs/protocol.md.",
    docs_url="/docs",
    urls_namespace="api",
)


def _validation_detail(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors:
        # ninja prefixes locations with the parameter source ("body", "payload", "query").
        location = [str(p) for p in error.get("loc", ()) if p not in ("body", "payload", "query", "path")]
        where = ".".join(location)
        message = str(error.get("msg", "invalid value"))
        parts.append(f"{where}: {message}" if where else message)
    return "Invalid request: " + "; ".join(parts)


@api.exception_handler(ValidationError)
def _on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    return json_error(400, _validation_detail(exc))


@api.exception_handler(ChatError)
def _on_chat_error(request: HttpRequest, exc: ChatError) -> HttpResponse:
    return json_error(exc.http_status, exc.message, code=exc.code)


@api.exception_handler(HttpError)
def _on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return json_error(exc.status_code, str(exc))


@api.get("/", tags=["system"], summary="Server banner")
def root(request: HttpRequest) -> dict[str, str]:
    return {"message": "DreamyTin backend is running", "status": "running"}


@api.get("/health", tags=["system"], summary="Database, channel layer and MCP server status")
async def health(request: HttpRequest) -> JsonResponse:
    from django.utils import timezone

    report = await health_check()
    services = report.services if await health_details_allowed(request) else services_public(report.services)
    return JsonResponse(
        {
            "status": report.status,
            "timestamp": timezone.now().isoformat(),
            "version": dreamytin.__version__,
            "services": services,
            # "done" once the first turn no longer pays for first-use costs (chat.warmup).
            "warmup": warmup_state().value,
        },
        status=200 if report.status == "healthy" else 503,
    )


# Before the chat router: `/conversations/export` is not a conversation's id.
api.add_router("", archive_router)
api.add_router("", chat_router)
api.add_router("", turns_router)
api.add_router("", tools_router)
