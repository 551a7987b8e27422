"""One chat turn: validate it, drive the Agents SDK, map and record its events, end it.

`turn_begin` runs inside the consumer's `receive` (quick: validation and one transaction);
`turn_run` runs in its own task, so a cancel frame or a disconnect can stop it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from agents import Agent, FunctionTool, RunConfig, Runner, ToolErrorFormatterArgs
from agents.result import RunResultStreaming
from asgiref.sync import sync_to_async
from django.conf import settings

from chat.catalog import CatalogModel, catalog_get
from chat.exceptions import ModelUnavailable, UnknownModel
from chat.models import TurnStatus
from chat.protocol import ErrorEvent, FinalResponseStart, FinishReason, Queued, StreamEnd, TurnEvent
from chat.providers import (
    TurnFailure,
    failure_classify,
    model_resolve,
    provider_streams_closed,
    provider_turn_slot,
)
from chat.store import selectors, services
from chat.turn.journal import Journal
from chat.turn.mapping import EventMapper
from chat.turn.session import ConversationSession
from chat.usage import RequestUsage, request_usage, stream_end_usage, usage_estimate, usage_row
from tools.adapter import function_tool
from tools.offered import mcp_function_tools
from tools.registry import registry

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


async def turn_begin(
    *,
    conversation_id: str,
    message: str,
    model_id: str | None,
    owner_id: int | None = None,
    admit: Callable[..., None] | None = None,
) -> TurnPlan:
    """Check the model and store the user's message; raise a `ChatError` for a lone error.
    `admit(turn=, history=, model=, message=)` may refuse the turn inside its start's
    transaction (the budget: accounts.budget)."""
    catalog = catalog_get()
    chosen = (
        model_id or await selectors.aconversation_model(conversation_id=conversation_id) or catalog.usable_default()
    )
    model = catalog.get(chosen)
    if model is None:
        raise UnknownModel(f"Unknown model {chosen!r}; GET /models lists the available ones.")
    if not model.usable:
        raise ModelUnavailable(
            f"The model {chosen!r} is not available: its provider ({model.provider}) has no API key configured."
        )
    turn, history = await services.aturn_start(
        conversation_id=conversation_id,
        model=model.id,
        user_message=message,
        owner_id=owner_id,
        admit=partial(admit, model=model, message=message) if admit is not None else None,
    )
    return TurnPlan(
        conversation_id=conversation_id,
        turn_id=turn.id,
        model=model,
        message=message,
        history=history,
        owner_id=owner_id,
    )


@lru_cache(maxsize=4)
def _instructions(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _tool_not_found(offered: list[str], args: ToolErrorFormatterArgs[Any]) -> str | None:
    """What the model reads when it calls a tool it was not offered: the turn goes on."""
    if args.kind != "tool_not_found":
        return None  # the SDK's own message
    available = ", ".join(offered) if offered else "none"
    return f"Error: there is no tool named {args.tool_name!r}. The tools you can call are: {available}."


def run_config_build(agent: Agent[Any]) -> RunConfig:
    offered = [tool.name for tool in agent.tools]
    return RunConfig(
        tracing_disabled=not settings.AGENTS_TRACING,
        workflow_name="DreamyTin chat",
        tool_not_found_behavior="return_error_to_model",
        tool_error_formatter=partial(_tool_not_found, offered),
    )


def agent_build(model: CatalogModel, mcp_tools: Sequence[FunctionTool] = ()) -> Agent[Any]:
    """The turn's agent: the enabled built-in tools, then the MCP servers' (`mcp_tools`)."""
    offered = registry.enabled() if model.supports_tools else []
    resolved = model_resolve(model)
    # Only the offered tools' paragraphs: a model must not be told to cite notes it cannot search.
    paragraphs = [tool.instructions for tool in offered if tool.instructions]
    return Agent(
        name="DreamyTin",
        instructions="\n\n".join([_instructions(Path(settings.SYSTEM_PROMPT_FILE)), *paragraphs]),
        model=resolved.model,
        model_settings=resolved.settings,
        tools=[*(function_tool(tool) for tool in offered), *(mcp_tools if model.supports_tools else ())],
    )


class _Turn:
    """The state of one running turn; `run` always ends with exactly one `stream_end`."""

    def __init__(self, plan: TurnPlan, emit: Emit) -> None:
        self.plan = plan
        self.emit = emit
        self.agent: Agent[Any] | None = None  # built inside `run`, so a failure ends the turn
        self.mapper = EventMapper()
        self.journal = Journal(turn_id=plan.turn_id, conversation_id=plan.conversation_id)
        self.session = ConversationSession(
            conversation_id=plan.conversation_id,
            journal=self.journal,
            max_tokens=plan.model.max_tokens,
            history=plan.history,
        )
        self.result: RunResultStreaming | None = None
        self.sent_events = 0
        self.beat: asyncio.Task[None] | None = None  # the heartbeat's latest write
        self.task: asyncio.Task[Any] | None = None
        self.lease_lost = False
        self.interrupted = False  # set before a cancel that means "this process is stopping"
        self.started = time.perf_counter()

    async def run(self) -> None:
        status, finish, failure = TurnStatus.COMPLETE, "stop", None
        self.task = asyncio.current_task()
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            async with provider_turn_slot(self.plan.model, self._queued), provider_streams_closed():
                await self._stream_with_retries()
        except asyncio.CancelledError:
            if self.lease_lost:
                return  # another process ended the turn and told its sockets
            status, finish = TurnStatus.CANCELLED, "cancelled"
            if self.interrupted:  # its process is stopping
                failure = TurnFailure(code="interrupted", message=services.INTERRUPTED_ERROR, retryable=True)
                status, finish = TurnStatus.INTERRUPTED, "error"
        except Exception as exc:  # every failure ends the turn with an error event
            failure = failure_classify(exc)
            if failure.code == "internal_error":
                logger.error("turn failed", exc_info=exc, extra={"event": "turn_internal_error"})
            status = TurnStatus.ERROR
            finish = "max_turns" if failure.code == "max_turns_exceeded" else "error"
        finally:
            heartbeat.cancel()
        # A beat still writing (or about to) goes first: the end is the turn's last write.
        await asyncio.gather(heartbeat, *([self.beat] if self.beat else []), return_exceptions=True)
        await self._finish(status, finish, failure)

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
            mcp_tools = await mcp_function_tools() if self.plan.model.supports_tools else []
            self.agent = agent_build(self.plan.model, mcp_tools)
            self.mapper.offered = frozenset(tool.name for tool in self.agent.tools)
        self.result = Runner.run_streamed(
            self.agent,
            self.plan.message,
            session=self.session,
            max_turns=settings.AGENT_MAX_TURNS,
            run_config=run_config_build(self.agent),
        )
        async for sdk_event in self.result.stream_events():
            for event in self.mapper.feed(sdk_event):
                self.sent_events += 1
                self.journal.observe(event)
                self.emit(event)
            if self.mapper.completed:
                self._record_completed()

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

    async def _heartbeat(self) -> None:
        """Renew the turn's lease and write what it has not written yet."""
        while True:
            await asyncio.sleep(services.HEARTBEAT_SECONDS)
            self.beat = asyncio.create_task(self._beat())
            await asyncio.shield(self.beat)  # cancelling the heartbeat must not cut a write short

    async def _beat(self) -> None:
        try:
            if not await self.journal.flush():
                self._lease_lose()
        except Exception:
            # The turn goes on and the next flush writes it all; missed beats only matter once
            # they outlast the lease (another worker then marks the turn interrupted).
            logger.exception("heartbeat failed", extra={"event": "heartbeat_failed"})

    def _lease_lose(self) -> None:
        """Its lease lapsed (this process was too slow to renew it) and another process ended
        the turn as orphaned: stop, sending nothing more."""
        logger.warning("turn %s lost its lease", self.plan.turn_id, extra={"event": "turn_lease_lost"})
        self.lease_lost = True
        if self.task is not None:
            self.task.cancel()

    async def _finish(self, status: TurnStatus, finish: FinishReason, failure: TurnFailure | None) -> None:
        try:
            await self._record_end(status, finish, failure)
            if self.lease_lost:
                return
        except Exception:
            # The sockets still get stream_end; once the lease lapses, a reaper writes the end
            # from the event log.
            logger.exception(
                "could not record the end of turn %s", self.plan.turn_id, extra={"event": "turn_record_failed"}
            )
        if failure is not None:
            if self.sent_events:
                # The frontend writes an error over the last assistant message: give it an
                # entry of its own, so the text and tools already shown stay (PROTOCOL.md,
                # "Errors after output"), as the restored conversation shows them.
                self.emit(FinalResponseStart())
            self.emit(
                ErrorEvent(
                    error=failure.message,
                    code=failure.code,
                    retryable=failure.retryable,
                    retry_after=failure.retry_after,
                )
            )
        usage = stream_end_usage(self.journal.usage)
        self.emit(StreamEnd(finish_reason=finish, usage=usage))
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

    async def _record_end(self, status: TurnStatus, finish: FinishReason, failure: TurnFailure | None) -> None:
        if status != TurnStatus.COMPLETE:
            await self._estimate_unreported(failure, self.journal.open_text_so_far())
        end = services.TurnEnd(
            status, finish, error_code=failure.code if failure else "", error=failure.message if failure else ""
        )
        if not await self.journal.flush(end):
            self.lease_lost = True

    async def _estimate_unreported(self, failure: TurnFailure | None, partial_text: str) -> None:
        """A request in flight when the turn stopped was billed but never reported its usage."""
        if self.result is None or self.mapper.unfinished_calls():
            return  # stopped before any request, or while tools ran (no request in flight)
        if failure is not None and (
            failure.code not in ("provider_unavailable", "provider_timeout") or self.mapper.timing.first_output is None
        ):
            return  # refused requests (auth, rate limit, bad request) are not billed
        items = await selectors.asession_items(conversation_id=self.plan.conversation_id)
        usage = await sync_to_async(usage_estimate, thread_sensitive=False)(
            model=self.plan.model,
            prompt_items=items + self.journal.items_unsaved(),
            # The agent's own: the system prompt and its tools' paragraphs.
            instructions=str(self.agent.instructions) if self.agent is not None else "",
            output_text=partial_text,
        )
        self._usage_add(usage)


class TurnRun:
    """A turn to run in its own task: `run` ends it with exactly one `stream_end`."""

    def __init__(self, plan: TurnPlan, emit: Emit) -> None:
        self._turn = _Turn(plan, emit)

    async def run(self) -> None:
        await self._turn.run()

    def mark_interrupted(self) -> None:
        """The cancel that follows means the process is stopping: end as `interrupted`."""
        self._turn.interrupted = True
