"""OpenAI Chat Completions, answered in process by the local model.

The local model is reached the way an OpenAI-compatible server is: the Agents SDK's own Chat
Completions model, through an OpenAI client whose HTTP goes to `LocalTransport` instead of a
socket. So a local turn produces exactly the events of every other provider (one code path
from the SDK on, tool calls and usage included), and this module only translates: the
request's messages into the model's chat template, the reply back into stream chunks.

Small local models have no function-calling API. The tools are described in the system message
in the Hermes format, which Qwen, Hermes and SmolLM2's larger sizes were trained on, and a
`<tool_call>{"name": ..., "arguments": ...}</tool_call>` block in the reply becomes an OpenAI
tool call. Arguments that are not valid JSON go to the tool as they are, and the tool answers
with an error the model can read (`tools.adapter`); a block naming no known tool stays text.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings

from chat.local_model import ContextExceeded, Finished, GenerationRequest, LoadFailed, LocalEngine, Started

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(re.escape(CALL_OPEN) + r"(.*?)(?:" + re.escape(CALL_CLOSE) + r"|\Z)", re.S)
_NAME = re.compile(r'"name"\s*:\s*"([^"]*)"')
_ARGUMENTS = re.compile(r'"(?:arguments|parameters)"\s*:\s*', re.S)
TOOLS_PROMPT = """

# Tools

You may call one or more functions to help with the user's request. The functions are \
described in JSON inside <tools></tools>:
<tools>
{tools}
</tools>

To call a function, reply with only this, one block per call:
<tool_call>
{{"name": "<function name>", "arguments": {{<its arguments as a JSON object>}}}}
</tool_call>"""


# -- request → the model's messages ---------------------------------------------------------
def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: only text reaches a text model
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _call_block(call: dict[str, Any]) -> str:
    function = call.get("function", {})
    try:
        arguments: Any = json.loads(function.get("arguments") or "{}")
    except json.JSONDecodeError:
        arguments = function.get("arguments")  # replayed as the model wrote it
    return f"{CALL_OPEN}\n{json.dumps({'name': function.get('name'), 'arguments': arguments})}\n{CALL_CLOSE}"


def prompt_messages(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Chat Completions messages as plain `{role, content}` turns any chat template renders:
    tool calls as Hermes blocks in the assistant's text, tool outputs as user turns (templates
    that require user and assistant to alternate refuse a `tool` role), same roles merged."""
    plain: list[dict[str, str]] = []
    for message in messages:
        role = message.get("role", "user")
        content = _text(message.get("content"))
        if role == "developer":
            role = "system"
        elif role == "assistant" and message.get("tool_calls"):
            content = "\n".join([content, *(_call_block(call) for call in message["tool_calls"])]).strip()
        elif role == "tool":
            role, content = "user", f"<tool_response>\n{content}\n</tool_response>"
        if plain and plain[-1]["role"] == role:
            plain[-1]["content"] += "\n\n" + content
        else:
            plain.append({"role": role, "content": content})
    if tools:
        described = "\n".join(json.dumps(tool.get("function", tool)) for tool in tools)
        if not plain or plain[0]["role"] != "system":
            plain.insert(0, {"role": "system", "content": ""})
        plain[0]["content"] = (plain[0]["content"] + TOOLS_PROMPT.format(tools=described)).strip()
    return plain


# -- the reply → text and tool calls ---------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ParsedCall:
    name: str
    arguments: str  # JSON text, or what the model wrote when it is not JSON


def _parse_block(body: str, names: set[str]) -> ParsedCall | None:
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("name"), str):
        arguments = data.get("arguments", data.get("parameters", {}))
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        return ParsedCall(name=data["name"], arguments=text) if data["name"] in names else None
    # Malformed: take the name and the arguments' own JSON when they can be found, and pass
    # anything else on as written, for the tool to report.
    name = _NAME.search(body)
    if name is None or name.group(1) not in names:
        return None
    found = _ARGUMENTS.search(body)
    raw = body[found.end() :].strip() if found else body
    try:
        value, _ = json.JSONDecoder().raw_decode(raw)
        raw = json.dumps(value)
    except json.JSONDecodeError:
        pass
    return ParsedCall(name=name.group(1), arguments=raw)


def tool_calls_parse(text: str, names: set[str]) -> tuple[str, list[ParsedCall]]:
    """The text of a reply from its first `<tool_call>` on: what stays text, and the calls."""
    calls: list[ParsedCall] = []
    kept: list[str] = []
    position = 0
    for block in _BLOCK.finditer(text):
        kept.append(text[position : block.start()])
        call = _parse_block(block.group(1).strip(), names)
        if call is None:
            kept.append(block.group(0))
        else:
            calls.append(call)
        position = block.end()
    kept.append(text[position:])
    return "".join(kept).strip() if calls else "".join(kept), calls


class ReplySplitter:
    """Streams the reply's text as it comes, but holds back from the first `<tool_call>` on (and
    any tail that could be its start), which is parsed when the reply ends."""

    def __init__(self) -> None:
        self.text = ""
        self.shown = 0
        self.in_calls = False

    def feed(self, piece: str) -> str:
        self.text += piece
        if self.in_calls:
            return ""
        start = self.text.find(CALL_OPEN, self.shown)
        if start >= 0:
            self.in_calls = True
            end = start
        else:
            end = len(self.text)
            for size in range(min(len(CALL_OPEN) - 1, end - self.shown), 0, -1):
                if CALL_OPEN.startswith(self.text[end - size :]):
                    end -= size
                    break
        out, self.shown = self.text[self.shown : end], end
        return out

    def finish(self, names: set[str]) -> tuple[str, list[ParsedCall]]:
        rest = self.text[self.shown :]
        return tool_calls_parse(rest, names) if self.in_calls else (rest, [])


# -- the transport ---------------------------------------------------------------------------
def _sse(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def _error(status: int, message: str, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": "local_model_error", "code": code}})


class _Body(httpx.AsyncByteStream):
    def __init__(self, events: AsyncIterator[bytes]) -> None:
        self.events = events

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for event in self.events:
            yield event

    async def aclose(self) -> None:
        await self.events.aclose()  # type: ignore[attr-defined]  # an async generator: stops the model


class LocalTransport(httpx.AsyncBaseTransport):
    """Answers `POST …/chat/completions` (streamed) with the local engine."""

    def __init__(self, engine: LocalEngine) -> None:
        self.engine = engine

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(await request.aread())
        tools = body.get("tools") or []
        generation = self.engine.stream(
            GenerationRequest(
                messages=prompt_messages(body.get("messages", []), tools),
                max_tokens=min(
                    body.get("max_completion_tokens") or body.get("max_tokens") or settings.LOCAL_MODEL_MAX_TOKENS,
                    settings.LOCAL_MODEL_MAX_TOKENS,
                ),
                temperature=body.get("temperature", GenerationRequest.temperature),
                top_p=body.get("top_p", GenerationRequest.top_p),
                grammar=body.get("grammar"),
            )
        )
        try:
            started = await anext(generation)
        except LoadFailed:
            return _error(503, "The local model could not be loaded; the server log says why.", "model_not_loaded")
        except ContextExceeded as exc:
            return _error(400, str(exc), "context_length_exceeded")
        except BaseException:
            await generation.aclose()  # cancelled while it waited: stop the generation
            raise
        assert isinstance(started, Started)
        names = {tool.get("function", tool).get("name") for tool in tools}
        events = self._events(generation, model=body.get("model", "local"), names=names, usage=_wants_usage(body))
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=_Body(events))

    async def _events(
        self, generation: AsyncIterator[Any], *, model: str, names: set[str], usage: bool
    ) -> AsyncIterator[bytes]:
        base = {
            "id": f"chatcmpl-local-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        try:
            yield chunk({"role": "assistant", "content": ""})
            splitter = ReplySplitter()
            finished: Finished | None = None
            async for item in generation:
                if isinstance(item, Finished):
                    finished = item
                elif text := splitter.feed(item):
                    yield chunk({"content": text})
            assert finished is not None
            text, calls = splitter.finish(names)
            if text:
                yield chunk({"content": text})
            if calls:
                yield chunk({"tool_calls": [_call_delta(index, call) for index, call in enumerate(calls)]})
            yield chunk({}, "tool_calls" if calls else finished.finish_reason)
            if usage:
                prompt, completion = finished.prompt_tokens, finished.completion_tokens
                yield _sse(
                    {
                        **base,
                        "choices": [],
                        "usage": {
                            "prompt_tokens": prompt,
                            "completion_tokens": completion,
                            "total_tokens": prompt + completion,
                        },
                    }
                )
            yield b"data: [DONE]\n\n"
        finally:
            await generation.aclose()  # type: ignore[attr-defined]


def _wants_usage(body: dict[str, Any]) -> bool:
    return bool((body.get("stream_options") or {}).get("include_usage"))


def _call_delta(index: int, call: ParsedCall) -> dict[str, Any]:
    return {
        "index": index,
        "id": f"call_local_{uuid.uuid4().hex[:12]}",
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }
