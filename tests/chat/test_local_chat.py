"""The local model's translation layer, without the model: the prompt it is given, and its reply
read back as text and tool calls (the model itself: test_local_model.py)."""

from __future__ import annotations

import json

import pytest

from chat.local_chat import ParsedCall, ReplySplitter, prompt_messages, tool_calls_parse
from tools.adapter import tool_invoke
from tools.registry import registry

NAMES = {"ls", "read_file"}
LS_TOOL = {"type": "function", "function": {"name": "ls", "description": "List a directory", "parameters": {}}}


def test_history_becomes_plain_alternating_turns_with_the_tools_described():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "what is here?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "ls", "arguments": '{"path": "."}'}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '["a.txt"]'},
        {"role": "user", "content": "thanks"},
    ]
    plain = prompt_messages(messages, [LS_TOOL])
    assert [m["role"] for m in plain] == ["system", "user", "assistant", "user"]
    assert plain[0]["content"].startswith("Be brief.\n\n# Tools")
    assert json.dumps(LS_TOOL["function"]) in plain[0]["content"]
    assert plain[2]["content"] == '<tool_call>\n{"name": "ls", "arguments": {"path": "."}}\n</tool_call>'
    # The tool's output and the next user message are one user turn.
    assert plain[3]["content"] == '<tool_response>\n["a.txt"]\n</tool_response>\n\nthanks'


def test_without_tools_nothing_is_added():
    assert prompt_messages([{"role": "user", "content": "hi"}], []) == [{"role": "user", "content": "hi"}]


def feed_all(pieces: list[str]) -> tuple[str, str, list[ParsedCall]]:
    splitter = ReplySplitter()
    streamed = "".join(splitter.feed(piece) for piece in pieces)
    rest, calls = splitter.finish(NAMES)
    return streamed, rest, calls


def test_plain_text_streams_as_it_comes_even_with_a_lone_angle_bracket():
    streamed, rest, calls = feed_all(["Hello", " <b>", "world", " <tool"])
    assert streamed == "Hello <b>world "  # "<tool" might start a call: held back until the end
    assert (rest, calls) == ("<tool", [])


def test_a_tool_call_split_over_tokens_is_held_back_and_parsed():
    pieces = ["Let me look.", "<tool", "_call>\n", '{"name": "ls", ', '"arguments": {"path": "src"}}', "\n</tool_call>"]
    streamed, rest, calls = feed_all(pieces)
    assert streamed == "Let me look."
    assert rest == ""
    assert calls == [ParsedCall(name="ls", arguments='{"path": "src"}')]


def test_several_calls_and_an_unclosed_last_block():
    text = (
        '<tool_call>{"name": "ls", "arguments": {}}</tool_call>\n'
        '<tool_call>{"name": "read_file", "arguments": {"path": "a"}}'
    )
    assert tool_calls_parse(text, NAMES) == (
        "",
        [ParsedCall(name="ls", arguments="{}"), ParsedCall(name="read_file", arguments='{"path": "a"}')],
    )


@pytest.mark.parametrize(
    ("block", "arguments"),
    [
        ('{"name": "read_file", "arguments": {"path": "notes.txt"', '{"path": "notes.txt"'),  # cut short
        ('{"name": "read_file", "arguments": {path: notes.txt}}', "{path: notes.txt}}"),  # not JSON
    ],
)
async def test_malformed_tool_json_reaches_the_tool_which_reports_it(block, arguments):
    _, calls = tool_calls_parse(f"<tool_call>{block}</tool_call>", NAMES)
    assert calls == [ParsedCall(name="read_file", arguments=arguments)]
    result = await tool_invoke(registry.get("read_file"), calls[0].arguments)
    assert (result.ok, result.content) == (False, "Error: Invalid arguments: not valid JSON.")


def test_well_formed_arguments_in_a_broken_call_are_kept():
    _, calls = tool_calls_parse('<tool_call>{"name": "read_file", "arguments": {"path": "a"}, oops}', NAMES)
    assert calls == [ParsedCall(name="read_file", arguments='{"path": "a"}')]


def test_a_block_naming_no_known_tool_stays_text():
    text = '<tool_call>{"name": "rm", "arguments": {}}</tool_call>'
    assert tool_calls_parse(text, NAMES) == (text, [])
    garbage = "<tool_call>not json at all"
    assert tool_calls_parse(garbage, NAMES) == (garbage, [])
