"""REST: export one or all of the caller's conversations, import a file of them.

Registered before the chat router (`dreamytin.api`): `/conversations/export` is matched here
before `/conversations/{conversation_id}` could take "export" for an id.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import Query, Router, Schema
from pydantic import Field

from chat.archive.export import conversation_export, conversation_markdown, conversations_export, export_document
from chat.archive.formats import import_read
from chat.archive.imports import conversation_import
from chat.exceptions import ImportTooLarge, InvalidConversationId
from chat.ids import conversation_id_valid
from chat.store import selectors

router = Router()
_JSON = {"ensure_ascii": False}


class ExportFormat(Schema):
    format: Literal["json", "markdown"] = Field(
        "json", description="json: everything, to import again; markdown: to read"
    )


class ImportOut(Schema):
    imported: list[str] = Field(description="The new conversations' ids, in the file's order")


# The body is read as it came (`_upload`), not parsed by the API; this tells clients what to send.
# Only JSON bodies reach the API (`dreamytin.middleware.JsonBodyMiddleware`: a form could be sent
# cross-site without a CORS preflight), so the file is the body itself.
IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "description": "A DreamyTin export, a ChatGPT conversations.json or an Open WebUI export, as the body.",
        "content": {"application/json": {"schema": {"oneOf": [{"type": "object"}, {"type": "array", "items": {}}]}}},
    }
}


_DOCUMENT = {"type": "object", "description": "{format, version, exported_at, conversations: [...]}: docs/protocol.md"}
EXPORT_ALL = {
    "responses": {
        200: {
            "description": "All of the caller's conversations",
            "content": {"application/json": {"schema": _DOCUMENT}},
        }
    }
}
EXPORT_ONE = {
    "responses": {
        200: {
            "description": "The conversation, as JSON (a document of one) or Markdown",
            "content": {"application/json": {"schema": _DOCUMENT}, "text/markdown": {"schema": {"type": "string"}}},
        }
    }
}


def _owner(request: HttpRequest) -> int | None:
    return request.identity.owner_id  # type: ignore[attr-defined]


def _too_large(size: int) -> ImportTooLarge:
    return ImportTooLarge(
        f"The file is {size:,} bytes; imports take at most {settings.IMPORT_MAX_BYTES:,} (IMPORT_MAX_BYTES)."
    )


def _upload(request: HttpRequest) -> bytes:
    """The body, refused past IMPORT_MAX_BYTES."""
    limit = settings.IMPORT_MAX_BYTES
    declared = request.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared))
    # Read from the stream: `request.body` stops at DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB).
    raw = request.read(limit + 1)
    if len(raw) > limit:
        raise _too_large(len(raw))
    return raw


def _filename(title: str, extension: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", title).strip("-.")[:60] or "conversation"
    return f"{stem}.{extension}"


@router.get(
    "/conversations/export",
    tags=["conversations"],
    summary="Export all of the caller's conversations (JSON)",
    openapi_extra=EXPORT_ALL,
)
def conversations_export_all(request: HttpRequest) -> JsonResponse:
    document = export_document(list(conversations_export(owner_id=_owner(request))))
    response = JsonResponse(document, json_dumps_params=_JSON)
    response["Content-Disposition"] = 'attachment; filename="conversations.json"'
    return response


@router.get(
    "/conversations/{conversation_id}/export",
    tags=["conversations"],
    summary="Export one conversation: JSON with everything, or Markdown",
    openapi_extra=EXPORT_ONE,
)
def conversation_export_one(request: HttpRequest, conversation_id: str, query: Query[ExportFormat]) -> HttpResponse:
    if not conversation_id_valid(conversation_id):
        raise InvalidConversationId("Conversation ids are 1-64 characters of letters, digits, '-' and '_'.")
    conversation = selectors.conversation_get(conversation_id=conversation_id, owner_id=_owner(request))
    body = conversation_export(conversation)
    if query.format == "markdown":
        response: HttpResponse = HttpResponse(conversation_markdown(body), content_type="text/markdown; charset=utf-8")
        extension = "md"
    else:
        response = JsonResponse(export_document([body]), json_dumps_params=_JSON)
        extension = "json"
    response["Content-Disposition"] = f'attachment; filename="{_filename(body["title"], extension)}"'
    return response


@router.post(
    "/conversations/import",
    tags=["conversations"],
    summary="Import conversations: ours, ChatGPT's conversations.json or Open WebUI's export",
    response={201: ImportOut},
    openapi_extra=IMPORT_BODY,
)
def conversations_import(request: HttpRequest) -> tuple[int, dict[str, Any]]:
    conversations = import_read(_upload(request))
    owner_id = _owner(request)
    return 201, {"imported": [conversation_import(conversation=item, owner_id=owner_id) for item in conversations]}
