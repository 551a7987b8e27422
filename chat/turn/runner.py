"""One chat turn's run: drive the Agents SDK, map and record its events, end it.

`TurnRun` runs in its own task, so a cancel frame or a disconnect can stop it. It alone decides
how the turn ends (`stop`, once, with a reason) and sends exactly one `stream_end`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from agents import Agent, Runner
from agents.result import RunResultStreaming
from asgiref.sync import sync_to_async
from django.conf import settings

from chat.catalog import CatalogModel
from chat.protocol import FinishReason, Queued, TurnEvent
from chat.provider_bodies import provider_streams_closed
from chat.providers import TurnFailure, failure_classify, provider_turn_slot
from chat.store import selectors, services
from chat.titles import title_schedule
from chat.turn.agent import agent_build, run_config_build
from chat.turn.approval import Outlet, ResumePoint, pause_write, requests_build, resume_prepare, run_state, tools_gate
from chat.turn.journal import Journal, journal_from_frames
from chat.turn.lease import INTERRUPTED, Lease, closing_events
from chat.turn.mapping import EventMapper
from chat.turn.session import ConversationSession
from chat.usage import RequestUsage, request_usage, stream_end_usage, usage_estimate, usage_row
from observability.turn import TurnTelemetry
from tools.offered import mcp_tools_offered

logger = logging.getLogger(__name__)
Emit = Callable[[TurnEvent], None]  # sends the event to every socket on the conversation
RETRY_BACKOFF_SECONDS = 0.5


@dataclass(frozen=True, kw_only=True)
class TurnPlan:
    conversation_id: str
    turn_id: Any
    model: CatalogModel
    message: str
    history: list[dict[str, Any]]  # the replay items when the turn started
    owner_id: int | None = None  # the user whose conversation and spending it is (AUTH_MODE=django)
    resume: ResumePoint | None = None  # a turn paused for tool approval, going on (chat/turn/approval.py)


class StopReason(Enum):
    CANCEL = "cancel"  # a cancel frame, the grace after the last socket left, a test's end
    INTERRUPT = "interrupt"  # this process is stopping: the turn ends as `interrupted`
    LEASE_LOST = "lease_lost"  # another process ended it as orphaned: it sends nothing more


class TurnRun:
    """One running turn and its state; `task` ends it with exactly one `stream_end` (none when
    its lease was lost: the process that took it over ended it)."""

    def __init__(self, plan: TurnPlan, emit: Emit, outlet: Outlet) -> None:
        self.plan = plan
        self.emit = emit
        self.outlet = outlet
        self.agent: Agent[Any] | None = None  # built inside `run`, so a failure ends the turn
        self.mapper = EventMapper()
        self.sent_events = 0
        if plan.resume is None:
            self.journal = Journal(turn_id=plan.turn_id, conversation_id=plan.conversation_id)
        else:  # what it showed before its pause, all written
            frames = plan.resume.frames
            self.journal = journal_from_frames(
                turn_id=plan.turn_id, conversation_id=plan.conversation_id, frames=frames, saved=plan.resume.usage
            )
            resume_prepare(self.mapper, self.journal, plan.resume)
            self.sent_events = len(frames)  # shown: never retried
        self.session = ConversationSession(
            conversation_id=plan.conversation_id,
            journal=self.journal,
            max_tokens=plan.model.max_tokens,
            history=plan.history,
        )
        self.result: RunResultStreaming | None = None
        self.stopped: StopReason | None = None
        self.pausing = False  # writing its pause: a stop then waits for it (`stop`)
        self.paused = False  # it waits for the user's approval of a tool call: no stream_end yet
        self.started = time.perf_counter()
        self.telemetry: TurnTelemetry  # made in `_run`, the turn's own task
        self.task = asyncio.create_task(self._run(), name=f"turn {plan.turn_id}")

    def stop(self, reason: StopReason = StopReason.CANCEL) -> None:
        """End the turn, once: a second stop would cut short its recording of the first."""
        if self.stopped is not None or self.task.done():
            return
        self.stopped = reason
        if not self.pausing:  # else the pause completes: a cancel then ends the waiting turn
            self.task.cancel()

    async def _run(self) -> None:
        self.telemetry = TurnTelemetry(model=self.plan.model, conversation_id=self.plan.conversation_id)
        finish: FinishReason = "stop"
        failure: TurnFailure | None = None
        lease = Lease(self.journal.flush, on_lost=lambda: self.stop(StopReason.LEASE_LOST))
        try:
            async with provider_turn_slot(self.plan.model, self._queued), provider_streams_closed():
                await self._stream_with_retries()
        except asyncio.CancelledError:
            finish = "cancelled"
            if self.stopped is StopReason.INTERRUPT:
                finish, failure = "error", INTERRUPTED
        except Exception as exc:  # every failure ends the turn with an error event
            failure = failure_classify(exc)
            if failure.code == "internal_error":
                logger.error("turn failed", exc_info=exc, extra={"event": "turn_internal_error"})
            finish = "max_turns" if failure.code == "max_turns_exceeded" else "error"
        try:
            await lease.stop()
            # Else another process ended it and told its sockets, or it waits for an answer.
            if self.stopped is not StopReason.LEASE_LOST and not (self.paused and finish == "stop"):
                await self._finish(finish, failure)
        finally:
            # A no-op unless the end was never counted: the lease was lost, it waits, or the
            # task was cancelled again while it recorded its end (a process that stops).
            self.telemetry.end(None)

    async def _queued(self, ahead: int) -> None:
        # Not counted in `sent_events`: no model output reached the client, so a retry stays safe.
        replies = "1 reply" if ahead == 1 else f"{ahead} replies"
        self.emit(Queued(ahead=ahead, message=f"Waiting for the local model: {replies} ahead of yours."))

    async def _stream_with_retries(self) -> None:
        attempt = 0
        while True:
            try:
                await self._stream_once()
                return
            except Exception as exc:
                failure = failure_classify(exc)
                # Retry only while nothing reached the client: no text shown twice, no tool re-run.
                if self.sent_events or not failure.retryable or attempt >= settings.PROVIDER_RETRIES:
                    raise
                attempt += 1
                logger.warning(
                    "retrying turn after %s (attempt %s)", failure.code, attempt, extra={"event": "turn_retry"}
                )
                await self.journal.items_forget()
                await asyncio.sleep(failure.retry_after or RETRY_BACKOFF_SECONDS * attempt)

    async def _stream_once(self) -> None:
        try:
            await self._consume()
        except BaseException:
            if self.result is not None:
                # Stop the SDK's own tasks, which would otherwise run on (tools, further model
                # requests) after a cancel or a failure of ours, and let them unwind, so the one
                # reading the provider stream releases it before `provider_streams_closed`
                # closes it.
                self.result.cancel()
                await asyncio.sleep(0)
            raise

    async def _consume(self) -> None:
        if self.agent is None:
            mcp_tools = await mcp_tools_offered() if self.plan.model.supports_tools else []
            self.agent = agent_build(self.plan.model, [tool.function_tool() for tool in mcp_tools])
            await tools_gate(self.agent, mcp_tools, conversation_id=self.plan.conversation_id)
            self.mapper.offered = frozenset(tool.name for tool in self.agent.tools)
        resume = self.plan.resume
        self.result = Runner.run_streamed(
            self.agent,
            await run_state(self.agent, resume) if resume is not None else self.plan.message,
            session=self.session,
            max_turns=settings.AGENT_MAX_TURNS,
            run_config=run_config_build(self.agent),
        )
        async for sdk_event in self.result.stream_events():
            for event in self.mapper.feed(sdk_event):
                self._show(event)
            if self.mapper.completed:
                self._record_completed()
        if self.result.interruptions:
            await self._pause()

    def _show(self, event: TurnEvent) -> None:
        self.sent_events += 1
        self.journal.observe(event)
        self.telemetry.event(event)
        self.emit(event)

    async def _pause(self) -> None:
        """Wait for the user's approval of tool calls (chat/turn/approval.py): write the paused
        run, then send the requests; the turn's task ends with no `stream_end`."""
        assert self.result is not None
        self.pausing = True
        for event in self.mapper.pause():
            self._show(event)
        requests = requests_build(self.result, self.mapper)
        frames = await pause_write(
            result=self.result, journal=self.journal, outlet=self.outlet, requests=requests, first_turn=self._first()
        )
        if frames is None:
            self.stopped = StopReason.LEASE_LOST
            return
        self.paused = True
        for request, (seq, frame) in zip(requests, frames, strict=True):
            self.sent_events += 1
            self.telemetry.event(request)
            self.outlet.send(seq, frame)

    def _first(self) -> bool:
        """Whether this is the conversation's first turn (a title is made after it)."""
        return self.plan.resume.first_turn if self.plan.resume is not None else not self.plan.history

    def _record_completed(self) -> None:
        ended = time.perf_counter()
        for usage, timing in self.mapper.completed:
            self._usage_add(request_usage(usage, started=timing.started, first_output=timing.first_output, ended=ended))
        self.mapper.completed.clear()

    def _usage_add(self, usage: RequestUsage) -> None:
        row = usage_row(
            conversation_id=self.plan.conversation_id,
            turn_id=self.plan.turn_id,
            model=self.plan.model,
            usage=usage,
            user_id=self.plan.owner_id,
        )
        self.journal.usage_add(row)
        self.telemetry.usage(row)

    async def _finish(self, finish: FinishReason, failure: TurnFailure | None) -> None:
        try:
            if not await self._record_end(finish, failure):
                return  # lost its lease meanwhile: the process that took it over ends it
        except Exception:
            # The sockets still get stream_end; once the lease lapses, a reaper writes the end
            # from the event log.
            logger.exception(
                "could not record the end of turn %s", self.plan.turn_id, extra={"event": "turn_record_failed"}
            )
        usage = stream_end_usage(self.journal.usage)
        # Counted before the client hears of the end: a scrape right after `stream_end` sees it.
        self.telemetry.end(finish, failure.code if failure else None)
        for event in closing_events(finish, usage, failure, shown_anything=bool(self.sent_events)):
            self.emit(event)
        if finish == "stop":  # in the background: the reply is over for the user
            title_schedule(
                conversation_id=self.plan.conversation_id, first_turn=self._first(), owner_id=self.plan.owner_id
            )
        logger.info(
            "turn %s ended: %s",
            self.plan.turn_id,
            finish,
            extra={
                "event": "turn_end",
                "conversation_id": self.plan.conversation_id,
                "finish_reason": finish,
                "requests": usage["requests"],
                "duration_ms": round((time.perf_counter() - self.started) * 1000, 1),
            },
        )

    async def _record_end(self, finish: FinishReason, failure: TurnFailure | None) -> bool:
        end = services.TurnEnd.of(
            finish, error_code=failure.code if failure else "", error=failure.message if failure else ""
        )
        if finish != "stop":
            await self._estimate_unreported(failure, self.journal.open_text_so_far())
        return await self.journal.flush(end)

    async def _estimate_unreported(self, failure: TurnFailure | None, partial_text: str) -> None:
        """A request in flight when the turn stopped was billed but never reported its usage."""
        if self.result is None or self.mapper.unfinished_calls():
            return  # stopped before any request, or while tools ran (no request in flight)
        if failure is not None and (
            failure.code not in ("provider_unavailable", "provider_timeout") or self.mapper.timing.first_output is None
        ):
            return  # refused requests (auth, rate limit, bad request) are not billed
        items = await selectors.asession_items(conversation_id=self.plan.conversation_id, leaf=self.plan.turn_id)
        usage = await sync_to_async(usage_estimate, thread_sensitive=False)(
            model=self.plan.model,
            prompt_items=items + self.journal.items_unsaved(),
            # The agent's own: the system prompt and its tools' paragraphs.
            instructions=str(self.agent.instructions) if self.agent is not None else "",
            output_text=partial_text,
        )
        self._usage_add(usage)
