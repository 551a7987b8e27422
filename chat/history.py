"""Fit a conversation's replay items into the model's context window.

Whole turns are dropped, oldest first (a turn starts at a user message), so a tool call is
never separated from its output. The estimate is deliberately coarse and conservative: the
provider's own limit is the final word, answered by `context_length_exceeded`.
"""

from __future__ import annotations

import json
from typing import Any

# Characters per token, rounded down so the estimate errs on the large side.
CHARS_PER_TOKEN = 3
# Room left for the instructions, tool schemas, the new message and the reply.
CONTEXT_SHARE = 0.75


def item_tokens(item: dict[str, Any]) -> int:
    return len(json.dumps(item, ensure_ascii=False)) // CHARS_PER_TOKEN + 4


def _is_user_message(item: dict[str, Any]) -> bool:
    return item.get("role") == "user" and item.get("type", "message") == "message"


def history_turns(items: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    turns: list[list[dict[str, Any]]] = []
    for item in items:
        if _is_user_message(item) or not turns:
            turns.append([])
        turns[-1].append(item)
    return turns


def history_trim(items: list[dict[str, Any]], *, max_tokens: int) -> list[dict[str, Any]]:
    budget = int(max_tokens * CONTEXT_SHARE)
    turns = history_turns(items)
    sizes = [sum(item_tokens(item) for item in turn) for turn in turns]
    total = sum(sizes)
    start = 0
    while total > budget and start < len(turns) - 1:
        total -= sizes[start]
        start += 1
    return [item for turn in turns[start:] for item in turn]
