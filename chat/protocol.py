"""The WebSocket protocol's messages, typed: client frames validated at the boundary, and the
server events of a turn (../shared/PROTOCOL.md, docs/protocol.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, TypeAdapter, ValidationError

PROTOCOL_VERSION = 1
FinishReason = Literal["stop", "cancelled", "max_turns", "error"]


class FrameError(Exception):
    """A frame that starts no turn: answered by a lone `error` event."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class ChatFrame(_Frame):
    type: Literal["chat"] = "chat"
    message: StrictStr
    model: StrictStr | None = None


class RegenerateFrame(_Frame):
    """*Extension*: answer the user message of turn `message_id` again, on a new branch."""

    type: Literal["regenerate"]
    message_id: StrictStr
    model: StrictStr | None = None


class EditFrame(_Frame):
    """*Extension*: put `message` beside the user message `message_id`, and answer it."""

    type: Literal["edit"]
    message_id: StrictStr
    message: StrictStr
    model: StrictStr | None = None


class CancelFrame(_Frame):
    type: Literal["cancel"]


class PingFrame(_Frame):
    type: Literal["ping"]


class ResumeFrame(_Frame):
    """*Extension*: send again the current (or last) turn's events after `after_seq`."""

    type: Literal["resume"]
    after_seq: int = Field(ge=0)


class HelloFrame(_Frame):
    """*Extension*: the client speaks `protocol` (2: every socket is sent every turn)."""

    type: Literal["hello"]
    protocol: int = Field(ge=1)


class ToolApprovalFrame(_Frame):
    """*Extension*: the user's answer to a `tool_approval_request` (the same body as
    `POST /conversations/<id>/approvals/<approval_id>`)."""

    type: Literal["tool_approval"] = "tool_approval"
    approval_id: StrictStr = Field(min_length=1, max_length=64)
    approved: bool
    reason: StrictStr | None = Field(default=None, max_length=2000)
    remember: Literal["once", "conversation"] = "once"


AnyFrame = (
    ChatFrame | RegenerateFrame | EditFrame | CancelFrame | PingFrame | ResumeFrame | HelloFrame | ToolApprovalFrame
)
Frame = Annotated[AnyFrame, Field(discriminator="type")]
_FRAME = TypeAdapter(Frame)
FRAME_TYPES = ("chat", "regenerate", "edit", "cancel", "ping", "resume", "hello", "tool_approval")


def frame_parse(text: str, *, max_message_chars: int) -> AnyFrame:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FrameError("invalid_json", f"The frame is not valid JSON ({exc.msg}).") from exc
    except RecursionError as exc:  # a few thousand nested `[`: the parser's own depth limit
        raise FrameError("invalid_json", "The frame is nested too deeply.") from exc
    except ValueError as exc:  # an integer past Python's digit limit (int_max_str_digits)
        raise FrameError("invalid_json", "The frame holds a number too large to read.") from exc
    if not isinstance(data, dict):
        raise FrameError("invalid_message", "A frame must be a JSON object.")
    # The existing frontend sends chat frames with no `type`.
    data.setdefault("type", "chat")
    if data["type"] not in FRAME_TYPES:
        expected = ", ".join(FRAME_TYPES)
        raise FrameError("invalid_message", f"Unknown frame type {data['type']!r}; expected one of {expected}.")
    try:
        frame = _FRAME.validate_python(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][1:]) or 'frame'}: {err['msg']}" for err in exc.errors()
        )
        raise FrameError("invalid_message", f"Invalid {data['type']} frame: {problems}.") from exc
    if isinstance(frame, ChatFrame | EditFrame | RegenerateFrame):
        for name in ("message", "model", "message_id"):
            value = getattr(frame, name, None)
            if value is not None and not text_storable(value):
                raise FrameError("invalid_message", f"The {name} holds a NUL character or a lone UTF-16 surrogate.")
    if isinstance(frame, ChatFrame | EditFrame):
        if not frame.message.strip():
            raise FrameError("empty_message", "The message is empty.")
        if len(frame.message) > max_message_chars:
            raise FrameError(
                "message_too_large",
                f"The message is {len(frame.message)} characters long; the limit is {max_message_chars}.",
            )
    if isinstance(frame, ToolApprovalFrame) and frame.reason is not None and not text_storable(frame.reason):
        raise FrameError("invalid_message", "The reason holds a NUL character or a lone UTF-16 surrogate.")
    return frame


def text_storable(value: str) -> bool:
    """Whether every database stores it: PostgreSQL refuses NUL in text, and a lone surrogate
    ("\\ud800", valid in JSON) is no Unicode text at all (SQLite's driver cannot encode it)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Server events. `type` is a class constant; the emitter adds timestamp, model and the turn's
# ids and sequence number.


@dataclass(frozen=True, slots=True)
class Stream:
    type: ClassVar[str] = "stream"
    content: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    type: ClassVar[str] = "tool_call"
    tool_name: str
    arguments: dict[str, Any]
    call_id: str


@dataclass(frozen=True, slots=True)
class ToolResult:
    type: ClassVar[str] = "tool_result"
    tool_name: str
    result: str
    call_id: str
    ok: bool


@dataclass(frozen=True, slots=True)
class FinalResponseStart:
    type: ClassVar[str] = "final_response_start"


@dataclass(frozen=True, slots=True)
class FinalStream:
    type: ClassVar[str] = "final_stream"
    content: str


@dataclass(frozen=True, slots=True)
class StreamEnd:
    type: ClassVar[str] = "stream_end"
    finish_reason: FinishReason
    usage: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    type: ClassVar[str] = "error"
    error: str
    code: str
    retryable: bool = False
    retry_after: float | None = field(default=None)


@dataclass(frozen=True, slots=True)
class Queued:
    """*Extension*: the turn waits for a model that takes one turn at a time (the local model);
    sent first, before any text. `ahead` turns are before it; `message` says so to people."""

    type: ClassVar[str] = "queued"
    ahead: int
    message: str


@dataclass(frozen=True, slots=True)
class ToolApprovalRequest:
    """*Extension*: the tool call `call_id` (its `tool_call` was sent) waits for the user's
    answer (`tool_approval`); the turn pauses until every request of its step is answered."""

    type: ClassVar[str] = "tool_approval_request"
    approval_id: str
    call_id: str
    tool_name: str
    arguments: dict[str, Any]


TurnEvent = (
    Stream
    | ToolCall
    | ToolResult
    | FinalResponseStart
    | FinalStream
    | StreamEnd
    | ErrorEvent
    | Queued
    | ToolApprovalRequest
)


def event_fields(event: TurnEvent) -> dict[str, Any]:
    payload: dict[str, Any] = {"type": event.type}
    for name in event.__slots__:
        value = getattr(event, name)
        if value is not None:
            payload[name] = value
    return payload


_EVENT_TYPES: dict[str, type[Any]] = {
    kind.type: kind
    for kind in (
        Stream,
        ToolCall,
        ToolResult,
        FinalResponseStart,
        FinalStream,
        StreamEnd,
        ErrorEvent,
        Queued,
        ToolApprovalRequest,
    )
}


def event_from_fields(payload: dict[str, Any]) -> TurnEvent | None:
    """A sent frame's event again (a turn rebuilt from its event log); None for any other type."""
    kind = _EVENT_TYPES.get(payload.get("type", ""))
    if kind is None:
        return None
    return kind(**{name: payload[name] for name in kind.__slots__ if name in payload})
