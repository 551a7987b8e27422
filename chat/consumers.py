"""The WebSocket endpoint `/ws/<client_id>`: parse frames, start, cancel or resume a turn.

A socket watches its conversation: it is sent the events of every turn of it, whichever socket
or worker runs the turn (chat/turn/). A v1 socket (the existing frontend's) shares its page's
turns with the page's other sockets: one of them shows each turn (chat/turn/delivery.py).

A turn runs in its own task, owned by the conversation, not by this connection: Channels hands a
connection one message at a time, and the turn outlives the socket that started it.
"""

from __future__ import annotations

import logging
import time
from enum import Enum
from typing import Any
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import DEFAULT_CHANNEL_LAYER
from django.conf import settings

from accounts.budget import budget_admission
from accounts.identity import BEARER, Identity
from accounts.limits import FrameRate, rate_hit
from accounts.revocation import aidentity_current, identity_groups, revocation_listen, revocation_unlisten
from chat.catalog import catalog_get
from chat.exceptions import ChatError
from chat.ids import conversation_id_valid
from chat.protocol import (
    PROTOCOL_VERSION,
    CancelFrame,
    ChatFrame,
    EditFrame,
    FrameError,
    HelloFrame,
    PingFrame,
    RegenerateFrame,
    ResumeFrame,
    ToolApprovalFrame,
    frame_parse,
)
from chat.turn import (
    BranchRequest,
    Watcher,
    approval_answer,
    branch_check,
    client_key,
    resume,
    turn_cancel,
    turn_running,
    turn_start,
    unwatch,
    upgrade,
    watch,
)
from chat.visibility import aconversation_claim
from chat.wire import json_encode, timestamp_now
from observability import metrics
from observability.tracing import caller_capture

logger = logging.getLogger("chat.websocket")
CLOSE_INVALID_ID = 4400  # application close code: the conversation id is malformed
CLOSE_TOO_BIG = 1009  # RFC 6455: message too big
# A frame flood far past RATE_LIMIT_FRAMES. An application code: Daphne (autobahn) refuses to
# send 1008 or any code but 1000 and 3000-4999 from the application, and raises instead.
CLOSE_FLOOD = 4429
CLOSE_NOT_FOUND = 4404  # application close code: another user's conversation (refused at the handshake)
CLOSE_REVOKED = 4401  # application close code: the socket's token was deleted or its user deactivated


class ConnectionState(Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSED = "closed"


class ChatConsumer(AsyncWebsocketConsumer):
    @property
    def channel_layer_alias(self) -> str | None:  # type: ignore[override]
        # Turn events reach sockets through the conversation's event log (chat/turn/fanout.py), not
        # the channel layer, whose per-channel capacity a token stream would overflow. The layer
        # carries only revocations (accounts/revocation.py), for identities that can be revoked.
        return DEFAULT_CHANNEL_LAYER if identity_groups(self.scope["identity"]) else None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state = ConnectionState.CONNECTING
        self.conversation_id = ""
        self.watcher: Watcher | None = None
        self.frames = FrameRate(settings.RATE_LIMIT_FRAMES)

    @property
    def identity(self) -> Identity:
        return self.scope["identity"]  # accounts.websocket.AccessGuard admitted it

    async def connect(self) -> None:
        self.conversation_id = self.scope["url_route"]["kwargs"]["client_id"]
        caller_capture(self.scope)  # the handshake's traceparent: this socket's turns continue it
        if not conversation_id_valid(self.conversation_id):
            await self.close(code=CLOSE_INVALID_ID)
            return
        # Refused like a malformed id: never joined, and nothing of it is sent.
        mine = await aconversation_claim(
            conversation_id=self.conversation_id,
            owner_id=self.identity.owner_id,
            model=catalog_get().usable_default(),
        )
        if not mine:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        # A client that sent its token as the subprotocols `bearer, <token>` expects one back.
        await self.accept(subprotocol=BEARER if self.identity.via_subprotocol else None)
        self.state = ConnectionState.OPEN
        metrics.socket_opened()
        logger.info(
            "connect %s", self.conversation_id, extra={"event": "ws_connect", "conversation_id": self.conversation_id}
        )
        await revocation_listen(self, self.identity)
        await self._send({"type": "connected", "conversation_id": self.conversation_id, "protocol": PROTOCOL_VERSION})
        self.watcher = await watch(
            self.conversation_id,
            self._send_text,
            resume_after=self._after_seq(),
            client=self._client(),
            gone=self._conversation_gone,
        )

    async def _conversation_gone(self) -> None:
        """Its conversation was deleted: nothing more of it may reach this socket."""
        if self.state is ConnectionState.OPEN:
            await self._close(CLOSE_NOT_FOUND)

    def _client(self) -> str:
        """The page this socket belongs to (its user, address, Origin and User-Agent)."""
        headers = dict(self.scope.get("headers", []))
        return client_key(
            user_id=self.identity.user_id,
            address=self.identity.address,
            origin=headers.get(b"origin", b"").decode("latin-1"),
            user_agent=headers.get(b"user-agent", b"").decode("latin-1"),
        )

    def _after_seq(self) -> int | None:
        """`/ws/<id>?after_seq=n`: resume at once, before any live event can reach the socket."""
        values = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get("after_seq", [])
        # ASCII digits only (`"²".isdigit()` is true, `int("²")` raises), and few: an integer past
        # 4,300 digits would raise.
        value = values[0] if values else ""
        return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else None

    async def disconnect(self, code: int) -> None:
        if self.state is not ConnectionState.CONNECTING:  # it was accepted (and counted)
            metrics.socket_closed()
        self.state = ConnectionState.CLOSED
        await revocation_unlisten(self, self.identity)
        if self.watcher is not None:
            # The turn goes on for TURN_DETACH_GRACE seconds if this was its last socket.
            await unwatch(self.watcher)
        logger.info(
            "disconnect %s (%s)",
            self.conversation_id,
            code,
            extra={"event": "ws_disconnect", "conversation_id": self.conversation_id, "code": code},
        )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.state is not ConnectionState.OPEN:
            return  # frames the server had queued before this socket was closed
        verdict, retry_after = self.frames.hit(time.monotonic())
        if verdict == "drop":
            return
        if verdict == "refuse":
            message = f"Too many frames; slow down (frames are ignored for {retry_after:.1f} s)."
            await self._lone_error("rate_limited", message, retryable=True, retry_after=retry_after)
            return
        if verdict == "close":
            await self._close(CLOSE_FLOOD)
            return
        if text_data is None:
            await self._lone_error("invalid_message", "Binary frames are not supported; send JSON text frames.")
            return
        limit = settings.CHAT_MAX_FRAME_BYTES
        # A character is at most four bytes in UTF-8: encode only frames that could be too big.
        if len(text_data) > limit // 4 and len(text_data.encode()) > limit:
            await self._lone_error("message_too_large", "The frame is larger than 1 MiB.")
            await self._close(CLOSE_TOO_BIG)
            return
        try:
            frame = frame_parse(text_data, max_message_chars=settings.CHAT_MAX_MESSAGE_CHARS)
        except FrameError as exc:
            await self._lone_error(exc.code, exc.message)
            return
        if isinstance(frame, PingFrame):
            await self._send({"type": "pong", "timestamp": timestamp_now()})
        elif isinstance(frame, CancelFrame):
            await turn_cancel(self.conversation_id)
        elif isinstance(frame, ResumeFrame):
            assert self.watcher is not None
            await resume(self.watcher, frame.after_seq)
        elif isinstance(frame, HelloFrame):
            assert self.watcher is not None
            if frame.protocol >= 2:
                upgrade(self.watcher)
            await self._send({"type": "hello", "protocol": min(frame.protocol, 2), "timestamp": timestamp_now()})
        elif isinstance(frame, ChatFrame):
            await self._start_turn(frame.message, frame.model)
        elif isinstance(frame, RegenerateFrame):
            await self._start_turn(None, frame.model, BranchRequest("regenerate", frame.message_id))
        elif isinstance(frame, EditFrame):
            await self._start_turn(frame.message, frame.model, BranchRequest("edit", frame.message_id))
        elif isinstance(frame, ToolApprovalFrame):
            await self._answer(frame)

    async def identity_revoked(self, event: dict[str, Any]) -> None:
        """Its token was deleted or its user deactivated (accounts/revocation.py)."""
        if self.state is not ConnectionState.OPEN:
            return
        await self._lone_error("unauthorized", "Your credentials were revoked; this connection is closed.")
        await self._close(CLOSE_REVOKED)
        if event.get("user"):
            await turn_cancel(self.conversation_id)  # a deactivated user's reply stops too

    async def _start_turn(self, message: str | None, model: str | None, branch: BranchRequest | None = None) -> None:
        """A chat frame's turn, or with `branch` a regenerate's (`message` None) or an edit's."""
        # This process's turn, answered without a query; a turn on another worker is found by
        # `turn_start` (the conversation's row is locked while it looks), and for a regenerate or
        # an edit first by `branch_check`.
        if turn_running(self.conversation_id):
            await self._lone_error(
                "busy", "A reply is still being generated; wait for it or cancel it.", retryable=True
            )
            return
        if identity_groups(self.identity) and not await aidentity_current(self.identity):
            await self.identity_revoked({"user": False})  # a revocation whose message was lost
            return
        try:
            if branch is not None:  # a refused regenerate or edit counts against no limit
                await branch_check(self.conversation_id, branch, owner_id=self.identity.owner_id)
            limited = await rate_hit("turns", self.identity.limit_key, settings.RATE_LIMIT_TURNS)
            if not limited.allowed:
                refusal = f"Too many messages; retry in {limited.retry_after:.0f} seconds."
                await self._lone_error("rate_limited", refusal, retryable=True, retry_after=limited.retry_after)
                return
            await turn_start(
                conversation_id=self.conversation_id,
                message=message,
                model_id=model,
                owner_id=self.identity.owner_id,
                sender=self.watcher,
                admit=budget_admission(self.identity),  # the day's budget, reserved as the turn starts
                branch=branch,
            )
        except ChatError as exc:
            await self._lone_error(exc.code, exc.message, retryable=exc.retryable, retry_after=exc.retry_after)
            return
        except Exception:
            logger.exception("could not start a turn", extra={"event": "turn_start_failed"})
            await self._lone_error("internal_error", "Something went wrong on the server; the message was not sent.")

    async def _answer(self, frame: ToolApprovalFrame) -> None:
        """The user's answer to a tool approval request: the paused turn goes on (here) once
        every request of its step is answered; its events reach every socket as before."""
        try:
            await approval_answer(
                conversation_id=self.conversation_id,
                approval_id=frame.approval_id,
                approved=frame.approved,
                reason=frame.reason or "",
                remember=frame.remember,
                owner_id=self.identity.owner_id,
            )
        except ChatError as exc:
            await self._lone_error(exc.code, exc.message, retryable=exc.retryable)
        except Exception:
            logger.exception("could not answer a tool approval", extra={"event": "approval_failed"})
            await self._lone_error("internal_error", "Something went wrong on the server; the answer was not taken.")

    async def _close(self, code: int) -> None:
        """Close from our side, once: a server must not be sent a second close."""
        self.state = ConnectionState.CLOSED
        await self.close(code=code)

    async def _lone_error(
        self, code: str, message: str, *, retryable: bool = False, retry_after: float | None = None
    ) -> None:
        metrics.error_counted(code)
        event = {"type": "error", "error": message, "code": code, "retryable": retryable, "timestamp": timestamp_now()}
        if retry_after is not None:
            event["retry_after"] = round(retry_after, 1)
        await self._send(event)

    async def _send(self, payload: dict[str, Any]) -> None:
        await self._send_text(json_encode(payload))

    async def _send_text(self, text: str) -> None:
        if self.state is not ConnectionState.OPEN:
            return  # the client left; the turn goes on without it
        await self.send(text_data=text)
