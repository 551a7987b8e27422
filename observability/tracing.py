"""OpenTelemetry traces, sent over OTLP/HTTP only when OTEL_EXPORTER_OTLP_ENDPOINT is set.

A turn is one span (`observability.turn`), child of the `traceparent` its socket's handshake
carried, or the root of a trace of its own. Below it, the Agents SDK's own tracing interface
(`agents.tracing.TracingProcessor`) gives a span per agent run, per model request and per tool
call, so the turn's code holds no tracing calls. When OTel is on and AGENTS_TRACING is off, our
processor *replaces* the SDK's default one, which would send traces to OpenAI.

Attributes follow the GenAI semantic conventions; message text and tool arguments and results
are recorded only with OTEL_CAPTURE_CONTENT=1.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from agents import add_trace_processor, set_trace_processors
from agents.tracing import Span as SdkSpan
from agents.tracing import Trace as SdkTrace
from agents.tracing import TracingProcessor
from django.conf import settings
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import dreamytin

# The GenAI conventions' provider names for the catalog's providers.
PROVIDER_NAMES = {"openai": "openai", "anthropic": "anthropic", "google": "gcp.gemini"}
_propagator = TraceContextTextMapPropagator()
# The caller's trace (a socket's handshake `traceparent`): a turn's task inherits it.
_caller: ContextVar[Context | None] = ContextVar("dreamytin_trace_caller", default=None)
# The provider of the running turn's model, for the SDK's spans under it.
turn_provider: ContextVar[str] = ContextVar("dreamytin_turn_provider", default="")


@dataclass(frozen=True)
class _Tracing:
    provider: TracerProvider
    tracer: Tracer


_tracing: _Tracing | None = None
_lock = threading.Lock()


def tracer() -> Tracer | None:
    """This process's tracer, made on first use (in the worker process itself: the batch
    exporter's thread must not be forked); None when OTel is off."""
    global _tracing
    if settings.OTEL_EXPORTER_OTLP_ENDPOINT is None:
        return None
    if _tracing is None:
        with _lock:
            if _tracing is None:
                _tracing = _start(settings.OTEL_EXPORTER_OTLP_ENDPOINT)
    return _tracing.tracer


def _start(endpoint: str) -> _Tracing:
    resource = Resource.create({"service.name": settings.OTEL_SERVICE_NAME, "service.version": dreamytin.__version__})
    provider = TracerProvider(resource=resource)  # flushed at exit (its atexit hook)
    # OTEL_EXPORTER_OTLP_HEADERS (a collector's key) and OTEL_BSP_* are read by the SDK itself.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
    tracer = provider.get_tracer("dreamytin", dreamytin.__version__)
    processor = AgentsSpanProcessor(tracer)
    if settings.AGENTS_TRACING:
        add_trace_processor(processor)  # the operator asked for OpenAI's traces too
    else:
        set_trace_processors([processor])  # replaces the default one, which sends to OpenAI
    return _Tracing(provider, tracer)


def sdk_tracing_wanted() -> bool:
    """Whether the Agents SDK should make traces at all: for OpenAI's dashboard (AGENTS_TRACING)
    or for our OTel spans."""
    return settings.AGENTS_TRACING or settings.OTEL_EXPORTER_OTLP_ENDPOINT is not None


def sdk_tracing_options() -> dict[str, bool]:
    """The tracing fields of a turn's `RunConfig`; installs our processor before the run."""
    if not sdk_tracing_wanted():
        return {"tracing_disabled": True}
    tracer()
    # Without AGENTS_TRACING only our processor sees the data, and it drops text unless asked.
    return {"tracing_disabled": False, "trace_include_sensitive_data": settings.AGENTS_TRACING or capture_content()}


def capture_content() -> bool:
    return settings.OTEL_CAPTURE_CONTENT


def caller_from_headers(headers: Mapping[str, str]) -> Context | None:
    if "traceparent" not in headers:
        return None
    return _propagator.extract(headers)


def caller_capture(scope: Mapping[str, Any]) -> None:
    """Remember the `traceparent` of a WebSocket handshake: the turns its socket starts
    continue that trace (their tasks inherit this context)."""
    if settings.OTEL_EXPORTER_OTLP_ENDPOINT is None:
        return
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", ())}
    _caller.set(caller_from_headers(headers))


def turn_span_start(*, model: str, provider: str, conversation_id: str) -> tuple[Span | None, object | None]:
    """The turn's span, made current in the turn's task; None when OTel is off."""
    active = tracer()
    if active is None:
        return None, None
    span = active.start_span(
        "chat turn",
        context=_caller.get(),
        kind=SpanKind.SERVER,
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.request.model": model,
            "gen_ai.provider.name": PROVIDER_NAMES.get(provider, provider),
            "gen_ai.system": PROVIDER_NAMES.get(provider, provider),
            "gen_ai.conversation.id": conversation_id,
            "gen_ai.agent.name": "DreamyTin",
        },
    )
    turn_provider.set(provider)
    return span, otel_context.attach(otel_trace.set_span_in_context(span))


def turn_span_end(span: Span, token: object, *, finish: str | None, error_code: str | None) -> None:
    if finish is not None:
        span.set_attribute("dreamytin.finish_reason", finish)
    if error_code:
        span.set_attribute("error.type", error_code)
        span.set_status(Status(StatusCode.ERROR, error_code))
    span.end()
    try:
        otel_context.detach(token)  # type: ignore[arg-type]
    except ValueError:
        pass  # ended from another context (a cancelled task): the context dies with the task


class AgentsSpanProcessor(TracingProcessor):
    """The Agents SDK's spans as OTel spans under the current one (the turn's): each model
    request (`generation`) and tool call (`function`). Its trace (one agent run) and its other
    spans (agent, task, turn, response ...) are not exported: their children hang on the
    nearest exported ancestor."""

    EXPORTED = frozenset({"generation", "function"})

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer
        self.runs: dict[str, Span] = {}  # SDK trace id -> the span its spans go under
        self.spans: dict[str, tuple[Span, bool]] = {}  # SDK span id -> (span, ours to end)

    def on_trace_start(self, trace: SdkTrace) -> None:
        # The run's spans go under the turn's (current in the turn's task): the turn span is
        # the agent's invocation, and a retried run adds its requests to the same turn.
        self.runs[trace.trace_id] = otel_trace.get_current_span()

    def on_trace_end(self, trace: SdkTrace) -> None:
        self.runs.pop(trace.trace_id, None)

    def on_span_start(self, span: SdkSpan[Any]) -> None:
        parent = self._parent(span)
        if parent is None:
            return
        kind = span.span_data.type
        if kind not in self.EXPORTED:
            self.spans[span.span_id] = (parent, False)
            return
        if kind == "generation":
            model = span.span_data.model or ""
            name, attributes = f"chat {model}", {"gen_ai.operation.name": "chat", "gen_ai.request.model": model}
            provider = PROVIDER_NAMES.get(turn_provider.get(), turn_provider.get())
            if provider:
                attributes["gen_ai.provider.name"] = attributes["gen_ai.system"] = provider
            kind_of = SpanKind.CLIENT
        else:
            tool = span.span_data.name
            name = f"execute_tool {tool}"
            attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool}
            attributes["gen_ai.tool.type"] = "function"
            kind_of = SpanKind.INTERNAL
        started = self.tracer.start_span(
            name, context=otel_trace.set_span_in_context(parent), kind=kind_of, attributes=attributes
        )
        self.spans[span.span_id] = (started, True)

    def on_span_end(self, span: SdkSpan[Any]) -> None:
        entry = self.spans.pop(span.span_id, None)
        if entry is None or not entry[1]:
            return
        otel_span = entry[0]
        data = span.span_data
        if data.type == "generation":
            _generation_attributes(otel_span, data)
        elif data.type == "function" and capture_content():
            if data.input is not None:
                otel_span.set_attribute("gen_ai.tool.call.arguments", str(data.input))
            if data.output is not None:
                otel_span.set_attribute("gen_ai.tool.call.result", str(data.output))
        if span.error:
            otel_span.set_attribute("error.type", span.error.get("message") or "error")
            otel_span.set_status(Status(StatusCode.ERROR, span.error.get("message")))
        otel_span.end()

    def _parent(self, span: SdkSpan[Any]) -> Span | None:
        if span.parent_id is not None and span.parent_id in self.spans:
            return self.spans[span.parent_id][0]
        return self.runs.get(span.trace_id)

    def shutdown(self) -> None:
        pass  # the TracerProvider flushes at exit

    def force_flush(self) -> None:
        if _tracing is not None:
            _tracing.provider.force_flush()


def _generation_attributes(span: Span, data: Any) -> None:
    usage = data.usage or {}
    if "input_tokens" in usage:
        span.set_attribute("gen_ai.usage.input_tokens", usage["input_tokens"])
        span.set_attribute("gen_ai.usage.output_tokens", usage.get("output_tokens", 0))
        cached = (usage.get("input_tokens_details") or {}).get("cached_tokens")
        if cached:
            span.set_attribute("gen_ai.usage.cache_read.input_tokens", cached)
    config = data.model_config or {}
    for key, attribute in (("temperature", "gen_ai.request.temperature"), ("max_tokens", "gen_ai.request.max_tokens")):
        if config.get(key) is not None:
            span.set_attribute(attribute, config[key])
    if capture_content():
        if data.input:
            span.set_attribute("gen_ai.input.messages", json.dumps(data.input, default=str))
        if data.output:
            span.set_attribute("gen_ai.output.messages", json.dumps(data.output, default=str))
