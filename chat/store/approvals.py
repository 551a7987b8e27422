"""Tool approvals in the database: a paused turn's requests and run state, and the answers.

A turn that pauses for approval is `waiting`: no process holds it, so the reaper leaves it
alone, and its requests and its paused run outlive every worker. An answer is recorded once (a
conditional update on the request), and the answer that leaves none of its turn's requests
pending takes the turn back (`waiting` → `streaming`, with a fresh lease) for the caller's
process to resume: exactly one process resumes it, whichever answers race.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from django.db import transaction
from django.utils import timezone

from chat.exceptions import ApprovalAnswered, ChatError, UnknownApproval
from chat.models import ApprovalStatus, PausedTurn, ToolApproval, Turn, TurnStatus, UsageRecord
from chat.protocol import ToolApprovalRequest
from chat.store.db import db_async

REMEMBER_CONVERSATION = "conversation"
# The budget's check of a turn about to resume (accounts.budget.resume_admission): called with
# `turn_id`, `conversation_id`, `user_id` and `model_id` inside the answer's transaction; its
# refusal, or None.
ResumeAdmit = Callable[..., ChatError | None]


class PauseWrite(NamedTuple):
    """What a turn that pauses stores beside its journal's flush (same transaction)."""

    state: dict[str, Any]  # the SDK's `RunState.to_json()`
    frames: list[str]  # every frame of the turn so far, its requests included
    first_turn: bool
    requests: list[ToolApprovalRequest]


class Decision(NamedTuple):
    approved: bool
    reason: str
    remember: str


@dataclass(frozen=True)
class Resumption:
    """A paused turn this process took back, to resume (or, `decisions` empty, to end)."""

    turn_id: str
    conversation_id: str
    model: str
    owner_id: int | None
    state: dict[str, Any]
    frames: list[str]
    first_turn: bool
    decisions: dict[str, Decision]  # by call id
    usage: list[UsageRecord]  # the ledger rows of its requests before the pause
    refused: ChatError | None = None  # the budget's refusal: to end, not resume


def turn_pause_write(*, turn_id: Any, conversation_id: str, pause: PauseWrite) -> None:
    """Inside `services.turn_flush`'s transaction: the paused run and its requests."""
    PausedTurn.objects.update_or_create(
        turn_id=turn_id, defaults={"state": pause.state, "frames": pause.frames, "first_turn": pause.first_turn}
    )
    ToolApproval.objects.bulk_create(
        ToolApproval(
            id=uuid.UUID(request.approval_id),
            turn_id=turn_id,
            conversation_id=conversation_id,
            call_id=request.call_id,
            tool_name=request.tool_name,
            arguments=request.arguments,
        )
        for request in pause.requests
    )


def _approval_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise UnknownApproval(f"No tool approval request {value!r} in this conversation.") from exc


@transaction.atomic
def approval_answer(
    *,
    conversation_id: str,
    approval_id: str,
    approved: bool,
    reason: str = "",
    remember: str = "once",
    owner_id: int | None = None,
    admit: ResumeAdmit | None = None,
) -> Resumption | None:
    """Record the answer; the paused turn to resume when it was the last one pending (this
    caller then resumes it, or ends it if `admit` refused it), else None. `owner_id`: only the
    conversation's owner may answer."""
    requests = ToolApproval.objects.filter(id=_approval_id(approval_id), conversation_id=conversation_id)
    if owner_id is not None:
        requests = requests.filter(conversation__owner_id=owner_id)
    turn_id = requests.values_list("turn_id", flat=True).first()
    if turn_id is None:
        raise UnknownApproval(f"No tool approval request {approval_id!r} in this conversation.")
    # The turn's row, locked: its answers are counted one at a time (two last answers racing
    # would each see the other still pending, and neither resume it).
    list(Turn.objects.select_for_update().filter(id=turn_id).values_list("id"))
    answered = requests.filter(status=ApprovalStatus.PENDING).update(
        status=ApprovalStatus.APPROVED if approved else ApprovalStatus.DECLINED,
        reason=reason,
        remember=remember,
        answered_at=timezone.now(),
    )
    if not answered:
        raise ApprovalAnswered(f"The tool approval request {approval_id!r} was answered already.")
    return _take_back(turn_id, admit)


def _take_back(turn_id: Any, admit: ResumeAdmit | None) -> Resumption | None:
    if ToolApproval.objects.filter(turn_id=turn_id, status=ApprovalStatus.PENDING).exists():
        return None
    return _claim(turn_id, decided=True, admit=admit)


def _claim(turn_id: Any, *, decided: bool, admit: ResumeAdmit | None = None) -> Resumption | None:
    """`waiting` → `streaming` with a fresh lease, once; the paused run, read and dropped. With
    `admit`, the budget's check first (refused: taken all the same, for the caller to end)."""
    waiting = Turn.objects.filter(id=turn_id, status=TurnStatus.WAITING)
    turn = waiting.values("conversation_id", "model", "conversation__owner_id").first()
    if turn is None:
        return None  # another process took it
    paused = PausedTurn.objects.get(turn_id=turn_id)
    # Checked while the turn still waits: its own hold must not count against it.
    refused = (
        admit(
            turn_id=turn_id,
            conversation_id=turn["conversation_id"],
            user_id=turn["conversation__owner_id"],
            model_id=turn["model"],
        )
        if admit is not None
        else None
    )
    if not waiting.update(status=TurnStatus.STREAMING, heartbeat_at=timezone.now()):
        return None  # taken meanwhile (a caller without the row's lock)
    paused.delete()
    answers = ToolApproval.objects.filter(turn_id=turn_id) if decided else ToolApproval.objects.none()
    decisions = {
        row.call_id: Decision(row.status == ApprovalStatus.APPROVED, row.reason, row.remember) for row in answers
    }
    return Resumption(
        turn_id=str(turn_id),
        conversation_id=turn["conversation_id"],
        model=turn["model"],
        owner_id=turn["conversation__owner_id"],
        state=paused.state,
        frames=paused.frames,
        first_turn=paused.first_turn,
        decisions=decisions,
        usage=list(UsageRecord.objects.filter(turn_id=turn_id).order_by("created_at", "id")),
        refused=refused,
    )


@transaction.atomic
def waiting_turn_claim(*, conversation_id: str) -> Resumption | None:
    """Take back the conversation's waiting turn to end it (a cancel): its pending requests
    are cancelled. None when none waits (or another process took it first)."""
    turn_id = (
        Turn.objects.filter(conversation_id=conversation_id, status=TurnStatus.WAITING)
        .values_list("id", flat=True)
        .first()
    )
    if turn_id is None:
        return None
    list(Turn.objects.select_for_update().filter(id=turn_id).values_list("id"))
    taken = _claim(turn_id, decided=False)
    if taken is not None:
        ToolApproval.objects.filter(turn_id=turn_id, status=ApprovalStatus.PENDING).update(
            status=ApprovalStatus.CANCELLED, answered_at=timezone.now()
        )
    return taken


def approvals_overdue(*, asked_before: datetime) -> list[tuple[str, str]]:
    """(conversation id, approval id) of the requests pending since before `asked_before`."""
    overdue = ToolApproval.objects.filter(status=ApprovalStatus.PENDING, created_at__lt=asked_before)
    return [(conversation, str(approval)) for conversation, approval in overdue.values_list("conversation_id", "id")]


def tools_remembered(*, conversation_id: str) -> set[str]:
    """The tools the user approved for the rest of the conversation (`remember: "conversation"`)."""
    remembered = ToolApproval.objects.filter(
        conversation_id=conversation_id, status=ApprovalStatus.APPROVED, remember=REMEMBER_CONVERSATION
    )
    return set(remembered.values_list("tool_name", flat=True))


def approvals_pending(*, conversation_id: str) -> list[dict[str, Any]]:
    """`GET /conversations/<id>`'s `pending_approvals`, oldest first."""
    rows = ToolApproval.objects.filter(conversation_id=conversation_id, status=ApprovalStatus.PENDING)
    return [
        {
            "approval_id": str(row["id"]),
            "call_id": row["call_id"],
            "tool_name": row["tool_name"],
            "arguments": row["arguments"],
            "message_id": str(row["turn_id"]),
        }
        for row in rows.order_by("created_at").values("id", "call_id", "tool_name", "arguments", "turn_id")
    ]


def waiting_turn_frames(*, conversation_id: str) -> tuple[str, list[str]] | None:
    """The conversation's waiting turn and the frames its sockets were sent, if one waits."""
    paused = (
        PausedTurn.objects.filter(turn__conversation_id=conversation_id, turn__status=TurnStatus.WAITING)
        .values_list("turn_id", "frames")
        .first()
    )
    return (str(paused[0]), paused[1]) if paused is not None else None


aapproval_answer = db_async(approval_answer)
awaiting_turn_claim = db_async(waiting_turn_claim)
aapprovals_overdue = db_async(approvals_overdue)
atools_remembered = db_async(tools_remembered)
awaiting_turn_frames = db_async(waiting_turn_frames)
