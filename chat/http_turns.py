"""Turns without a socket: start, follow, cancel and look up a turn over HTTP.

The same turn a chat frame starts, through the same facade (chat/turn/) and the same checks
(rate limit, budget, busy, sizes, ownership); a lone `error` of the socket is an HTTP status with
`{"code", "error"}` here. A server-sent-events response is one more watcher of the conversation
(chat/sse.py): sockets and HTTP streams are views of one turn, on any worker.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import Router, Schema
from pydantic import BaseModel, ConfigDict, StrictBool, ValidationError

from accounts.budget import budget_admission
from accounts.identity import Identity
from accounts.limits import rate_hit
from chat.catalog import catalog_get
from chat.exceptions import ChatError, ConversationNotFound
from chat.ids import conversation_id_valid
from chat.protocol import ChatFrame, FrameError, frame_parse
from chat.sse import TurnStream, sse_response
from chat.store import selectors
from chat.turn import turn_cancel, turn_start, unwatch, watch
from chat.visibility import aconversation_claim
from dreamytin.middleware import json_error
from observability import metrics

logger = logging.getLogger(__name__)
router = Router(tags=["turns"])
# A lone error's code -> its HTTP status (any other code of a refused start: 400).
STATUS_OF = {"not_found": 404, "unknown_message": 404, "busy": 409, "budget_exceeded": 402, "rate_limited": 429}


class TurnOptions(BaseModel):
    """What the body adds to a chat frame's fields (which `frame_parse` checks as a socket's)."""

    model_config = ConfigDict(extra="ignore", strict=True)
    stream: StrictBool = False
    background: StrictBool = False


_FIELDS = {"detail": {"type": "string"}, "code": {"type": "string"}, "error": {"type": "string"}}
_ERROR = {
    "description": "Refused: {detail, code, error}",
    "content": {"application/json": {"schema": {"type": "object", "properties": _FIELDS}}},
}
_SSE = {"description": "Server-sent events: id = seq, event = type, data = the event's JSON",
        "content": {"text/event-stream": {"schema": {"type": "string"}}}}  # fmt: skip
_TURN_ERRORS = dict.fromkeys((400, 402, 404, 409, 429), _ERROR)


class TurnAccepted(Schema):
    conversation_id: str
    message_id: str
    status: str


class TurnMessageIn(Schema):
    """The body, for the OpenAPI document: read as a chat frame (`frame_parse`)."""

    message: str
    model: str | None = None
    stream: bool = False
    background: bool = False


def turn_error(code: str, message: str, *, status: int | None = None, retry_after: float | None = None) -> JsonResponse:
    metrics.error_counted(code)
    extra: dict[str, Any] = {"code": code, "error": message}
    if retry_after is not None:
        extra["retry_after"] = round(retry_after, 1)
    response = json_error(status or STATUS_OF.get(code, 400), message, **extra)
    if retry_after is not None:
        response["Retry-After"] = str(max(1, round(retry_after)))
    return response


def _chat_error(exc: ChatError) -> JsonResponse:
    status = STATUS_OF.get(exc.code) or (exc.http_status if exc.http_status >= 400 else 400)
    return turn_error(exc.code, exc.message, status=status, retry_after=exc.retry_after)


def _identity(request: HttpRequest) -> Identity:
    return request.identity  # type: ignore[attr-defined]


def _bad_id(conversation_id: str) -> JsonResponse | None:
    if conversation_id_valid(conversation_id):
        return None
    return turn_error("invalid_message", "Conversation ids are 1-64 characters of letters, digits, '-' and '_'.")


def _read_body(request: HttpRequest) -> tuple[ChatFrame, TurnOptions]:
    """The body as a chat frame (the socket's checks and codes) and its HTTP options."""
    if len(request.body) > settings.CHAT_MAX_FRAME_BYTES:
        raise FrameError("message_too_large", "The request body is larger than 1 MiB.")
    text = request.body.decode("utf-8", "replace") or "{}"
    frame = frame_parse(text, max_message_chars=settings.CHAT_MAX_MESSAGE_CHARS)
    if not isinstance(frame, ChatFrame):
        raise FrameError("invalid_message", 'The body is {"message", "model"?, "stream"?, "background"?}.')
    try:
        options = TurnOptions.model_validate_json(request.body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise FrameError("invalid_message", f"Invalid request: {problems}.") from exc
    return frame, options


@router.post(
    "/conversations/{conversation_id}/messages",
    response={202: TurnAccepted},
    openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": TurnMessageIn.json_schema()}}},
        "responses": {200: _SSE, **_TURN_ERRORS},
    },
    summary="Start a turn; with stream, its events as server-sent events",
)
async def turn_post(request: HttpRequest, conversation_id: str) -> HttpResponse:
    if (refused := _bad_id(conversation_id)) is not None:
        return refused
    try:
        frame, options = _read_body(request)
    except FrameError as exc:
        return turn_error(exc.code, exc.message)
    identity = _identity(request)
    # Without users every conversation is the caller's: no trip to the database to say so.
    mine = identity.owner_id is None or await aconversation_claim(
        conversation_id=conversation_id, owner_id=identity.owner_id, model=catalog_get().usable_default()
    )
    if not mine:
        return turn_error("not_found", f"Conversation {conversation_id} not found")
    limited = await rate_hit("turns", identity.limit_key, settings.RATE_LIMIT_TURNS)
    if not limited.allowed:
        message = f"Too many messages; retry in {limited.retry_after:.0f} seconds."
        return turn_error("rate_limited", message, retry_after=limited.retry_after)
    stream = TurnStream() if options.stream else None
    # Watching before the start: the stream misses none of the turn's events.
    watcher = await watch(conversation_id, stream.send) if stream is not None else None
    try:
        turn_id = await turn_start(
            conversation_id=conversation_id,
            message=frame.message,
            model_id=frame.model,
            owner_id=identity.owner_id,
            admit=budget_admission(identity),
            background=options.background,
        )
    except ChatError as exc:
        if watcher is not None:
            await unwatch(watcher)
        return _chat_error(exc)
    except Exception:
        if watcher is not None:
            await unwatch(watcher)
        logger.exception("could not start a turn", extra={"event": "turn_start_failed"})
        return turn_error("internal_error", "Something went wrong on the server; the message was not sent.", status=500)
    if stream is None:
        body = {"conversation_id": conversation_id, "message_id": turn_id, "status": "running"}
        return JsonResponse(body, status=202)
    stream.turn_id, stream.watcher = turn_id, watcher
    return sse_response(stream.events([], joined=False))


@router.get(
    "/conversations/{conversation_id}/events",
    openapi_extra={"responses": {200: _SSE, 204: {"description": "No turn to show"}, 400: _ERROR, 404: _ERROR}},
    summary="The running (or last) turn's events after after_seq, as server-sent events",
)
async def turn_events(request: HttpRequest, conversation_id: str, after_seq: int | None = None) -> HttpResponse:
    if (refused := _bad_id(conversation_id)) is not None:
        return refused
    after = after_seq if after_seq is not None else _last_event_id(request)
    if after is None or after < 0:
        return turn_error("invalid_message", "Say where to start: ?after_seq=<n> (0: from the start) or Last-Event-ID.")
    try:
        await selectors.aconversation_get(conversation_id=conversation_id, owner_id=_identity(request).owner_id)
    except ConversationNotFound as exc:
        return _chat_error(exc)
    # The database knows a turn that started before its first event reached the log.
    running = await selectors.aturn_in_progress(conversation_id=conversation_id)
    stream = TurnStream()
    stream.watcher = watcher = await watch(conversation_id, stream.send, resume_after=after)
    replay = await stream.replayed()
    if running is not None and running != stream.turn_id:
        stream.turn_id = running  # the watcher moves on to it when its log begins
        return sse_response(stream.events([], joined=False, after=after))
    if replay is None or (not replay and watcher.log is not None and watcher.log.ended):
        await unwatch(watcher)
        return HttpResponse(status=204)
    return sse_response(stream.events(replay, joined=True))


def _last_event_id(request: HttpRequest) -> int | None:
    value = request.headers.get("Last-Event-ID", "").strip()
    # ASCII digits only, and few (as the socket's `?after_seq=`).
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else None


@router.post("/conversations/{conversation_id}/cancel", summary="Cancel the conversation's running turn, anywhere")
async def turn_cancel_post(request: HttpRequest, conversation_id: str) -> HttpResponse:
    if (refused := _bad_id(conversation_id)) is not None:
        return refused
    try:
        await selectors.aconversation_get(conversation_id=conversation_id, owner_id=_identity(request).owner_id)
    except ConversationNotFound as exc:
        return _chat_error(exc)
    running = await selectors.aturn_in_progress(conversation_id=conversation_id)
    if running is not None:
        await turn_cancel(conversation_id)
    return JsonResponse({"cancelled": running is not None, "message_id": running})


@router.get("/conversations/{conversation_id}/turns/{message_id}", summary="A turn's status, finish reason and usage")
async def turn_status(request: HttpRequest, conversation_id: str, message_id: str) -> HttpResponse:
    if (refused := _bad_id(conversation_id)) is not None:
        return refused
    try:
        report = await selectors.aturn_report(
            conversation_id=conversation_id, turn_id=message_id, owner_id=_identity(request).owner_id
        )
    except ChatError as exc:
        return _chat_error(exc)
    return JsonResponse(report)
