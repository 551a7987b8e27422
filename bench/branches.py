"""Branches (issue 30): what the tree costs `GET /conversations/<id>` and a turn's start, for a
conversation of 200 turns.

    python3 -m bench.branches              # 200 turns, 300 rounds each
    python3 -m bench.branches --smoke      # 20 turns, 20 rounds: seconds
    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/branch_bench python3 -m bench.branches

It runs on a SQLite file of its own (or BENCH_DATABASE_URL, which it empties first). Each
conversation has TURNS turns: the user's question, the assistant's answer, a tool entry every
fifth turn, and their replay items (a function call and its output with each tool entry). One
is a single path; the other has as many turns again on other branches (a regenerated answer to
every other turn, and an edit of every fourth question), its active path as long as the first's.

Timed in the same run, on the same rows:
- `display`: the display list, by the code before the tree (`_display_before`, main's
  `conversation_display_messages`, kept here as the baseline) and by today's;
- `replay`: the items a turn's start reads, before (every item of the conversation, one column)
  and now (the active leaf, each turn's parent, then the items of the active path);
- `endpoint`: the whole `GET /conversations/<id>` through Django's test client, its display list
  built by the baseline (`endpoint_before`; the rest of the endpoint is today's) and by today's.
Prints the figures and writes JSON (bench/results/branches.json).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest.mock import patch

from bench.conversations import setup_django
from bench.measure import percentile, results_write

PROJECT = Path(__file__).resolve().parent.parent


def _turn_rows(conversation_id: str, number: int, parent: Any, prompt_id: Any, at: Any) -> tuple[Any, list, list]:
    from chat.models import Message, MessageKind, SessionItem, Turn, TurnStatus

    turn = Turn(
        conversation_id=conversation_id,
        model="gpt-4o",
        status=TurnStatus.COMPLETE,
        parent=parent,
        prompt_id=prompt_id,
        finish_reason="stop",
    )
    turn.created_at = at
    question, answer = f"Question {number}: how does part {number} work?", f"Part {number} works like this. " * 12
    messages = [Message(turn=turn, position=0, kind=MessageKind.USER, content=question)]
    items = [{"role": "user", "content": question}]
    if number % 5 == 4:
        call = f"call_{number}"
        messages.append(
            Message(turn=turn, position=1, kind=MessageKind.TOOL, content="read_file", tool_name="read_file")
        )
        items += [
            {"type": "function_call", "call_id": call, "name": "read_file", "arguments": '{"path": "a.md"}'},
            {"type": "function_call_output", "call_id": call, "output": "file text " * 40},
        ]
    messages.append(Message(turn=turn, position=len(messages), kind=MessageKind.ASSISTANT, content=answer))
    items.append({"role": "assistant", "content": [{"type": "output_text", "text": answer}]})
    replay = [SessionItem(conversation_id=conversation_id, turn=turn, data=item) for item in items]
    return turn, messages, replay


def generate(conversation_id: str, turns: int, *, branched: bool) -> None:
    """A conversation of `turns` turns on its active path (and, `branched`, as many off it)."""
    from django.utils import timezone

    from chat.models import Conversation, Message, SessionItem, Turn

    Conversation.objects.create(id=conversation_id, model="gpt-4o", title=conversation_id)
    now = timezone.now() - timedelta(days=1)
    rows: list[Any] = []
    messages: list[Any] = []
    replay: list[Any] = []

    def add(number: int, parent: Any, prompt_id: Any, at: Any) -> Any:
        turn, entries, items = _turn_rows(conversation_id, number, parent, prompt_id, at)
        rows.append(turn)
        messages.extend(entries)
        replay.extend(items)
        return turn

    parent = None
    for number in range(turns):
        at = now + timedelta(seconds=number * 10)
        prompt_id = uuid.uuid4()
        if branched and number % 4 == 1:  # an edit: the question before, answered once
            add(number, parent, uuid.uuid4(), at)
        if branched and number % 2 == 0:  # a regenerated answer, left aside
            add(number, parent, prompt_id, at)
        parent = add(number, parent, prompt_id, at + timedelta(seconds=1))
    Turn.objects.bulk_create(rows, batch_size=500)
    for turn in rows:  # auto_now_add set them to now
        turn.heartbeat_at = turn.created_at
    Turn.objects.bulk_update(rows, ["created_at", "heartbeat_at"], batch_size=500)
    Message.objects.bulk_create(messages, batch_size=1000)
    SessionItem.objects.bulk_create(replay, batch_size=1000)
    Conversation.objects.filter(id=conversation_id).update(active_leaf=parent, branched=branched)


def _display_before(*, conversation_id: str) -> list[dict[str, Any]]:
    """The baseline: main's `conversation_display_messages` before the tree (every turn, in
    order; the failed ones read by a query of their own)."""
    from chat.models import Turn
    from chat.store.selectors import INTERRUPTED_ERROR, _failed, display_entry, error_entry

    messages: list[dict[str, Any]] = []
    turns = Turn.objects.filter(conversation_id=conversation_id).prefetch_related("messages").order_by("created_at")
    failed = set(Turn.objects.filter(_failed(), conversation_id=conversation_id).values_list("id", flat=True))
    for turn in turns:
        for message in turn.messages.all():
            entry = display_entry(
                kind=message.kind, content=message.content, tool_name=message.tool_name, tool_result=message.tool_result
            )
            if entry is not None:
                messages.append(entry)
        if turn.id in failed:
            messages.append(error_entry(turn.error or INTERRUPTED_ERROR))
    return messages


def _display_baseline(*, conversation_id: str, **_today: Any) -> list[dict[str, Any]]:
    """`_display_before` in the endpoint's place (today's `active_leaf` and `live` unused)."""
    return _display_before(conversation_id=conversation_id)


def _replay_before(*, conversation_id: str) -> list[dict[str, Any]]:
    """The baseline: what `turn_start` read before the tree (every item, one column)."""
    from chat.models import SessionItem
    from chat.store.sql import column_values

    return column_values(SessionItem, "data", where={"conversation_id": conversation_id}, order_by="id")


def _replay_now(*, conversation_id: str) -> list[dict[str, Any]]:
    from chat.store.services import active_path, path_items

    return path_items(conversation_id=conversation_id, path=active_path(conversation_id)[1])


def _timed(rounds: int, calls: dict[str, Callable[[], Any]]) -> dict[str, dict[str, float]]:
    """Each call `rounds` times, in turn (before and now alternate, so a busy machine's drift
    falls on both): wall-clock and this process's CPU time (SQLite runs in it), which other
    processes on the machine do not inflate."""
    wall: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        call()  # warm
    for _ in range(rounds):
        for name, call in calls.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            call()
            cpu[name].append((time.process_time() - started_cpu) * 1000)
            wall[name].append((time.perf_counter() - started) * 1000)
    return {
        name: {
            "p50_ms": round(percentile(wall[name], 50) or 0, 3),
            "p90_ms": round(percentile(wall[name], 90) or 0, 3),
            "cpu_p50_ms": round(percentile(cpu[name], 50) or 0, 3),
            "cpu_mean_ms": round(statistics.fmean(cpu[name]), 3),
        }
        for name in calls
    }


def measure(turns: int, rounds: int) -> dict[str, Any]:
    from django.conf import settings
    from django.test import Client

    from chat.models import Conversation
    from chat.store import selectors
    from chat.store.selectors import conversation_display_messages

    settings.ALLOWED_HOSTS = ["*"]
    client = Client()
    figures: dict[str, Any] = {}
    for conversation_id, branched in (("linear", False), ("branched", True)):
        generate(conversation_id, turns, branched=branched)
        leaf = Conversation.objects.get(id=conversation_id).active_leaf_id
        shown = conversation_display_messages(conversation_id=conversation_id, active_leaf=leaf)
        if not branched:  # the same list as before, ids aside
            before = _display_before(conversation_id=conversation_id)
            assert [{k: v for k, v in e.items() if k not in ("id", "message_id")} for e in shown] == before
            assert _replay_now(conversation_id=conversation_id) == _replay_before(conversation_id=conversation_id)

        def endpoint(conversation_id: str = conversation_id) -> None:
            assert client.get(f"/conversations/{conversation_id}").status_code == 200

        def endpoint_before(conversation_id: str = conversation_id) -> None:
            """The endpoint with the display list built by the baseline (the rest is today's)."""
            with patch.object(selectors, "conversation_display_messages", _display_baseline):
                endpoint(conversation_id)

        calls = {
            "display_before": lambda c=conversation_id: _display_before(conversation_id=c),
            "display_now": lambda c=conversation_id, a=leaf: conversation_display_messages(
                conversation_id=c, active_leaf=a
            ),
            "replay_before": lambda c=conversation_id: _replay_before(conversation_id=c),
            "replay_now": lambda c=conversation_id: _replay_now(conversation_id=c),
            "endpoint_before": endpoint_before,
            "endpoint_now": endpoint,
        }
        figures[conversation_id] = {"turns_on_path": turns, "entries_shown": len(shown), **_timed(rounds, calls)}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=str(PROJECT / "bench" / "results" / "branches.json"))
    args = parser.parse_args()
    if args.smoke:
        args.turns, args.rounds = 20, 20
    with tempfile.TemporaryDirectory(prefix="bench-branches-") as temp:
        setup_django(os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{temp}/bench.sqlite3")
        from django.db import connection

        result = {"database": connection.vendor, "rounds": args.rounds, **measure(args.turns, args.rounds)}
        connection.close()
    for name in ("linear", "branched"):
        figures = result[name]
        on_path, shown = figures["turns_on_path"], figures["entries_shown"]
        print(f"{result['database']} {name}: {on_path} turns on the path, {shown} entries")
        for key in ("display_before", "display_now", "replay_before", "replay_now", "endpoint_before", "endpoint_now"):
            row = figures[key]
            print(
                f"  {key:15} wall p50 {row['p50_ms']:8.3f} ms  p90 {row['p90_ms']:8.3f} ms"
                f"  cpu p50 {row['cpu_p50_ms']:8.3f} ms  mean {row['cpu_mean_ms']:8.3f} ms"
            )
    results_write(args.out, result)


if __name__ == "__main__":
    main()
