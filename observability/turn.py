"""One turn's metrics and span, fed by four calls from the turn's code (chat/turn/runner.py):
`TurnTelemetry(...)` as it runs, `event` for each event it sends, `usage` for each model
request's ledger row, `end` once it ends."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings

from chat.catalog import CatalogModel
from chat.protocol import ToolResult, TurnEvent
from observability import metrics
from observability.tracing import turn_span_end, turn_span_start


class TurnTelemetry:
    __slots__ = ("answered", "counted", "ended", "model", "span", "started", "token")

    def __init__(self, *, model: CatalogModel, conversation_id: str) -> None:
        """Call it in the turn's own task: its span becomes current there."""
        self.model = model.id
        self.started = time.perf_counter()
        self.answered = False
        self.ended = False
        self.span, self.token = turn_span_start(
            model=model.id, provider=model.provider, conversation_id=conversation_id
        )
        self.counted = settings.METRICS  # the gauge goes down exactly when it went up
        if self.counted:
            metrics.turns_running.inc()

    def event(self, event: TurnEvent) -> None:
        """Every event the turn sends (the hot path: a type check per chunk)."""
        if type(event) is ToolResult:
            if settings.METRICS:
                metrics.tool_calls.labels(event.tool_name, "true" if event.ok else "false").inc()
        if not self.answered:
            self.answered = True
            if settings.METRICS:
                metrics.first_token.labels(self.model).observe(time.perf_counter() - self.started)

    def usage(self, row: Any) -> None:
        """A model request's ledger row (`chat.models.UsageRecord`, not yet saved)."""
        if not settings.METRICS:
            return
        for kind in ("input", "cached_input", "output", "reasoning"):
            count = getattr(row, f"{kind}_tokens")
            if count:
                metrics.tokens.labels(self.model, kind).inc(count)
        if row.cost_usd:
            metrics.cost.labels(self.model).inc(float(row.cost_usd))

    def end(self, finish: str | None, error_code: str | None = None) -> None:
        """Once, as the turn ends; `finish` None: another process ended it (its lease lapsed)."""
        if self.ended:
            return
        self.ended = True
        if self.counted:
            metrics.turns_running.dec()
        if settings.METRICS and finish is not None:
            metrics.turn_duration.labels(self.model).observe(time.perf_counter() - self.started)
        turn_end_count(self.model, finish, error_code)
        if self.span is not None:
            turn_span_end(self.span, self.token, finish=finish, error_code=error_code)


def turn_end_count(model: str, finish: str | None, error_code: str | None = None) -> None:
    """A turn's end in the counters: by `TurnTelemetry.end`, and for a turn ended while it
    waited for tool approval, whose run ended its telemetry at the pause."""
    if not settings.METRICS:
        return
    if finish is not None:
        metrics.turns.labels(model, finish).inc()
    if error_code:
        metrics.errors.labels(error_code).inc()
