"""Traces of the real server (daphne and uvicorn) sent over OTLP/HTTP to a receiver on
127.0.0.1: a real turn with a tool call through the fake provider is one trace that continues
the handshake's `traceparent`, with a span per model request and per tool call carrying the
GenAI attributes, and no message text unless OTEL_CAPTURE_CONTENT=1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.fake_provider import FakeProvider, text, tools
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.servers import Server
from tests.test_end_to_end import ORIGIN, server_env, until_end

pytestmark = pytest.mark.timeout(240)
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
QUESTION = "What is on my secret list?"
SECRET = "- write tests"


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    started = OtlpReceiver().start()
    yield started
    started.stop()


def traced_env(fake: FakeProvider, tmp: Path, name: str, receiver: OtlpReceiver, **extra: str) -> dict[str, str]:
    env = server_env(fake, tmp, name)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    # A short batch delay: the spans arrive within the test's patience.
    return {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100", **extra}


@pytest.fixture(scope="module", params=["daphne", "uvicorn"])
def server(request, fake_server, receiver, tmp_path_factory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp(f"otel-{request.param}")
    env = traced_env(fake_server, tmp, f"otel_{request.param}", receiver)
    running = Server(request.param, env, tmp / "log", start_timeout=180)
    yield running
    running.stop()


def tool_turn(server: Server, fake: FakeProvider, conversation_id: str, headers: dict[str, str]) -> list[dict]:
    fake.script(tools(("read_file", {"path": "todo.md"}), text=["Checking."]), text("You need to ", "write tests."))
    url = f"ws://127.0.0.1:{server.port}/ws/{conversation_id}"
    with connect(url, additional_headers={**ORIGIN, **headers}, open_timeout=5) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "connected"
        ws.send(json.dumps({"message": QUESTION, "model": "gpt-4o"}))
        return until_end(ws)


def turn_spans(receiver: OtlpReceiver, conversation_id: str) -> tuple[ReceivedSpan, list[ReceivedSpan]]:
    """The turn's span and every span under it, once the turn's span has arrived (its children
    end before it does, so they were exported with it or earlier)."""

    def is_turn(span: ReceivedSpan) -> bool:
        return span.name == "chat turn" and span.attributes.get("gen_ai.conversation.id") == conversation_id

    spans = receiver.wait_for(is_turn)
    (turn,) = [span for span in spans if is_turn(span)]
    same_trace = [span for span in spans if span.trace_id == turn.trace_id]
    # Another server's turns may continue the same traceparent: only this turn's descendants.
    return turn, [turn, *(span for span in same_trace if descends_from(span, turn, same_trace))]


def descends_from(span: ReceivedSpan, ancestor: ReceivedSpan, trace: list[ReceivedSpan]) -> bool:
    by_id = {s.span_id: s for s in trace}
    while span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        if span.span_id == ancestor.span_id:
            return True
    return False


def test_a_tool_turn_is_one_trace_continuing_the_handshakes_traceparent(server, fake, receiver):
    conversation_id = f"otel{server.port}"
    events = tool_turn(server, fake, conversation_id, {"traceparent": TRACEPARENT})
    assert events[-1]["finish_reason"] == "stop"
    turn, trace = turn_spans(receiver, conversation_id)
    assert (turn.trace_id, turn.parent_span_id) == (CALLER_TRACE, CALLER_SPAN)
    assert turn.attributes["gen_ai.request.model"] == "gpt-4o"
    assert turn.attributes["gen_ai.provider.name"] == "openai"
    assert turn.attributes["dreamytin.finish_reason"] == "stop"
    assert turn.resource["service.name"] == "dreamytin"
    requests = [s for s in trace if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert [s.name for s in requests] == ["chat gpt-4o", "chat gpt-4o"]  # the tool call's step, then the answer
    for request in requests:
        assert descends_from(request, turn, trace)
        assert request.attributes["gen_ai.request.model"] == "gpt-4o"
        assert request.attributes["gen_ai.system"] == "openai"
        # The fake provider reports 12 input and 7 output tokens per request.
        assert (request.attributes["gen_ai.usage.input_tokens"], request.attributes["gen_ai.usage.output_tokens"]) == (
            12,
            7,
        )
    (tool,) = [s for s in trace if s.attributes.get("gen_ai.operation.name") == "execute_tool"]
    assert tool.name == "execute_tool read_file" and tool.attributes["gen_ai.tool.name"] == "read_file"
    assert descends_from(tool, turn, trace)
    assert requests[0].start_ns < tool.start_ns < requests[1].start_ns
    # No message text, tool arguments or results: only with OTEL_CAPTURE_CONTENT=1.
    recorded = json.dumps([s.attributes for s in trace])
    assert QUESTION not in recorded and SECRET not in recorded and "todo.md" not in recorded


def test_without_a_traceparent_a_turn_starts_a_trace_of_its_own(server, fake, receiver):
    conversation_id = f"otelroot{server.port}"
    tool_turn(server, fake, conversation_id, {})
    turn, trace = turn_spans(receiver, conversation_id)
    assert turn.parent_span_id == "" and turn.trace_id != CALLER_TRACE
    assert {s.name for s in trace} >= {"chat turn", "chat gpt-4o", "execute_tool read_file"}


def test_an_http_request_continues_its_traceparent(server, receiver):
    answer = httpx.get(f"{server.url}/models", headers={"traceparent": TRACEPARENT})
    assert answer.status_code == 200
    spans = receiver.wait_for(lambda span: span.name == "GET /models" and span.trace_id == CALLER_TRACE)
    (span,) = [s for s in spans if s.name == "GET /models" and s.trace_id == CALLER_TRACE]
    assert span.parent_span_id == CALLER_SPAN and span.attributes["http.response.status_code"] == 200


def test_message_text_is_recorded_only_when_asked(fake_server, receiver, tmp_path):
    env = traced_env(fake_server, tmp_path, "otel_content", receiver, OTEL_CAPTURE_CONTENT="1")
    running = Server("uvicorn", env, tmp_path / "log", start_timeout=180)
    try:
        fake_server.reset()
        tool_turn(running, fake_server, "otelcontent", {})
    finally:
        running.stop()
    _, trace = turn_spans(receiver, "otelcontent")
    recorded = json.dumps([s.attributes for s in trace])
    assert QUESTION in recorded and SECRET in recorded
    (tool,) = [s for s in trace if s.attributes.get("gen_ai.operation.name") == "execute_tool"]
    assert json.loads(tool.attributes["gen_ai.tool.call.arguments"]) == {"path": "todo.md"}
