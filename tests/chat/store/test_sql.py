"""The turn's hot-path statements store and read rows exactly as the ORM does (this suite runs
on SQLite and on PostgreSQL), and so does their stock path (FAST_PATHS off)."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from chat.models import Conversation, Message, MessageKind, SessionItem, Turn, TurnStatus, UsageRecord
from chat.store.sql import column_values, objects_insert, rows_update, rows_values

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True, params=[True, False], ids=["fast", "stock"])
def fast_paths(request: pytest.FixtureRequest, settings: Any) -> None:
    settings.FAST_PATHS = request.param


def test_inserted_rows_read_back_through_the_orm_unchanged():
    objects_insert([Conversation(id="c1", model="gpt-4o", title="Ünïcode ✓")])
    turn = Turn(conversation_id="c1", model="gpt-4o")
    objects_insert([turn])
    items = [{"role": "user", "content": "hi ✓"}, {"type": "message", "content": [{"text": "a\nb", "n": 1.5}]}]
    objects_insert([SessionItem(conversation_id="c1", turn_id=turn.id, data=item) for item in items])
    tool = Message(turn=turn, position=1, kind=MessageKind.TOOL, arguments={"path": "."}, ok=True, duration_ms=1.5)
    objects_insert([Message(turn=turn, position=0, kind=MessageKind.USER, content="hi"), tool])
    cost = Decimal("0.0001234567")
    usage = UsageRecord(conversation_id="c1", turn_id=turn.id, model="gpt-4o", provider="openai", cost_usd=cost)
    objects_insert([usage])

    stored = Turn.objects.get()
    assert stored.id == turn.id and isinstance(stored.id, uuid.UUID)
    assert stored.status == TurnStatus.STREAMING
    # auto_now_add fields are set as the ORM sets them: now, time zone aware.
    assert timezone.now() - stored.created_at < timedelta(seconds=5)
    assert stored.heartbeat_at == turn.heartbeat_at and stored.finished_at is None
    assert Conversation.objects.get().title == "Ünïcode ✓"
    assert list(SessionItem.objects.order_by("id").values_list("data", flat=True)) == items
    assert list(Message.objects.order_by("position").values_list("kind", "arguments", "ok", "duration_ms")) == [
        ("user", None, None, None),  # a JSON field left empty is SQL NULL, not JSON null
        ("tool", {"path": "."}, True, 1.5),
    ]
    assert Message.objects.filter(arguments__isnull=True).count() == 1
    assert UsageRecord.objects.get().cost_usd == cost


def test_update_changes_only_the_matching_rows_and_counts_them():
    objects_insert([Conversation(id="c1", model="m"), Conversation(id="c2", model="m")])
    first, second = Turn(conversation_id="c1", model="m"), Turn(conversation_id="c1", model="m")
    objects_insert([first, second])
    finished = timezone.now()

    streaming = {"id": first.id, "status": TurnStatus.STREAMING}
    changed = rows_update(Turn, where=streaming, values={"status": "complete", "finished_at": finished})

    assert changed == 1
    assert Turn.objects.get(id=first.id).finished_at == finished
    assert Turn.objects.get(id=second.id).status == TurnStatus.STREAMING
    assert rows_update(Turn, where=streaming, values={"error": "x"}) == 0
    assert rows_update(Conversation, where={"id": "nobody"}, values={"model": "x"}) == 0


def test_column_values_match_values_list():
    objects_insert([Conversation(id="c1", model="m")])
    turns = [Turn(conversation_id="c1", model="m") for _ in range(2)]
    objects_insert(turns)
    objects_insert([SessionItem(conversation_id="c1", turn_id=turns[0].id, data={"n": n}) for n in (2, 1, 3)])
    where = {"conversation_id": "c1", "status": TurnStatus.STREAMING}

    heartbeats = column_values(Turn, "heartbeat_at", where=where)

    assert sorted(heartbeats) == sorted(Turn.objects.filter(**where).values_list("heartbeat_at", flat=True))
    assert all(beat.tzinfo is not None for beat in heartbeats)
    assert column_values(SessionItem, "data", where={"conversation_id": "c1"}, order_by="id") == [
        {"n": 2},
        {"n": 1},
        {"n": 3},
    ]
    assert column_values(SessionItem, "data", where={"conversation_id": "c2"}) == []


def test_rows_values_match_values_list():
    objects_insert([Conversation(id="c1", model="m")])
    first = Turn(conversation_id="c1", model="m")
    objects_insert([first, Turn(conversation_id="c1", model="m", parent_id=first.id)])
    objects_insert(
        [
            SessionItem(conversation_id="c1", turn_id=first.id, data={"n": 1}),
            SessionItem(conversation_id="c1", data={"n": 2}),
        ]
    )
    names = ("id", "parent", "prompt_id", "created_at")

    turns = rows_values(Turn, names, where={"conversation_id": "c1"}, order_by="created_at")

    assert turns == list(Turn.objects.filter(conversation_id="c1").order_by("created_at").values_list(*names))
    assert isinstance(turns[1][1], uuid.UUID) and turns[1][1] == first.id
    items = rows_values(SessionItem, ("turn", "data"), where={"conversation_id": "c1"}, order_by="id")
    assert items == [(first.id, {"n": 1}), (None, {"n": 2})]
    assert rows_values(SessionItem, ("turn", "data"), where={"conversation_id": "c2"}) == []


def test_an_insert_that_ignores_conflicts_skips_a_taken_key_and_says_so():
    assert objects_insert([Conversation(id="c1", model="first", title="kept")], ignore_conflicts=True) == 1

    assert objects_insert([Conversation(id="c1", model="second")], ignore_conflicts=True) == 0

    assert list(Conversation.objects.values_list("id", "model", "title")) == [("c1", "first", "kept")]


def test_more_rows_than_one_statement_takes_are_all_inserted():
    objects_insert([Conversation(id="c1", model="m")])
    items = [SessionItem(conversation_id="c1", data={"n": n}) for n in range(300)]
    previous = None
    if connection.vendor == "sqlite":  # as SQLite builds with the 999-parameter default take; 300 rows need 1,500
        connection.ensure_connection()
        previous = connection.connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    try:
        assert objects_insert(items) == 300
    finally:
        if previous is not None:
            connection.connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, previous)

    stored = SessionItem.objects.order_by("id").values_list("data", flat=True)
    assert [item["n"] for item in stored] == list(range(300))
