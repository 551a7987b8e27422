"""A turn that waits for the user's approval of a tool call, from the facade's side: an answer
(which resumes it here when it was the last one pending), a cancel, and the time-out.

What a pause is, and how the run goes on, is chat/turn/approval.py; the database's side (who
answered, who takes the turn back) is chat/store/approvals.py.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from accounts.budget import resume_admission
from chat.catalog import catalog_get
from chat.exceptions import ApprovalAnswered, UnknownApproval
from chat.providers import TurnFailure
from chat.runtime import Runtime, runtime
from chat.store import approvals, services
from chat.store.approvals import Resumption
from chat.turn.approval import ResumePoint
from chat.turn.journal import journal_from_frames
from chat.turn.lease import closing_events
from chat.turn.relay import stream_continue
from chat.turn.runner import TurnPlan
from chat.turn.running import turn_close, turn_launch
from chat.usage import stream_end_usage
from observability.turn import turn_end_count
from tools.approval import approval_configured


async def approval_answer(
    *,
    conversation_id: str,
    approval_id: str,
    approved: bool,
    reason: str = "",
    remember: str = "once",
    owner_id: int | None = None,
) -> None:
    """The user's answer to a tool approval request; raise `UnknownApproval` (not one of the
    conversation's, or of its owner's) or `ApprovalAnswered`. The answer that leaves none of
    its turn's requests pending resumes the turn, here, unless the user's budget is spent (it
    may have been spent elsewhere while the turn waited): the turn then ends with the error a
    new turn over budget gets, and no provider is called."""
    taken = await approvals.aapproval_answer(
        conversation_id=conversation_id,
        approval_id=approval_id,
        approved=approved,
        reason=reason,
        remember=remember,
        owner_id=owner_id,
        admit=resume_admission,
    )
    if taken is None:
        return  # others still wait
    if taken.refused is not None:
        refusal = TurnFailure(code=taken.refused.code, message=taken.refused.message, retryable=taken.refused.retryable)
        await _waiting_end(runtime(), taken, refusal)
        return
    model = catalog_get().get_or_default(taken.model)
    assert model is not None
    plan = TurnPlan(
        conversation_id=taken.conversation_id,
        turn_id=uuid.UUID(taken.turn_id),
        model=model,
        message="",
        history=[],
        owner_id=taken.owner_id,
        resume=ResumePoint(
            state=taken.state,
            frames=taken.frames,
            first_turn=taken.first_turn,
            decisions=taken.decisions,
            usage=taken.usage,
        ),
    )
    state = runtime()
    await stream_continue(state.relay(), state.feeds.get(taken.conversation_id), taken.turn_id, taken.frames)
    turn_launch(state, plan)


async def waiting_cancel(state: Runtime, conversation_id: str) -> bool:
    """End the conversation's turn that waits for a tool approval as cancelled, if one does."""
    taken = await approvals.awaiting_turn_claim(conversation_id=conversation_id)
    if taken is None:
        return False
    await _waiting_end(state, taken, None)
    return True


async def _waiting_end(state: Runtime, taken: Resumption, failure: TurnFailure | None) -> None:
    """End a paused turn taken back without running it: cancelled, or `failure`. The calls
    that waited stay unanswered ("stopped" for the model)."""
    finish = "error" if failure is not None else "cancelled"
    journal = journal_from_frames(
        turn_id=taken.turn_id, conversation_id=taken.conversation_id, frames=taken.frames, saved=taken.usage
    )
    await journal.flush(
        services.TurnEnd.of(
            finish, error_code=failure.code if failure else "", error=failure.message if failure else ""
        )
    )
    feed = state.feeds.get(taken.conversation_id)
    feed.turn_continue(taken.turn_id, taken.frames)
    await stream_continue(state.relay(), feed, taken.turn_id, taken.frames)
    turn_end_count(taken.model, finish, failure.code if failure else None)
    events = closing_events(finish, stream_end_usage(taken.usage), failure, shown_anything=True)
    turn_close(state, taken.conversation_id, taken.turn_id, taken.model, len(taken.frames), events)


async def approvals_expire() -> None:
    """Decline the tool approval requests left unanswered for `TOOL_APPROVAL_TIMEOUT` seconds
    (each worker's reaper checks; the first to answer one resumes its turn)."""
    timeout = settings.TOOL_APPROVAL_TIMEOUT
    if not timeout or not approval_configured():
        return
    overdue = await approvals.aapprovals_overdue(asked_before=timezone.now() - timedelta(seconds=timeout))
    for conversation_id, approval_id in overdue:
        try:
            await approval_answer(
                conversation_id=conversation_id,
                approval_id=approval_id,
                approved=False,
                reason=f"nobody answered within {timeout:g} seconds.",
            )
        except (ApprovalAnswered, UnknownApproval):
            continue  # answered meanwhile, or another worker's reaper declined it first
