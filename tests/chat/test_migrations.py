"""chat/migrations/0006_branches.py: conversations made by the schema before it become one path
each, and lose nothing; 0007: an earlier import's replay items get their turns."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from chat.models import Conversation, Turn
from chat.search import conversation_search
from chat.store import selectors

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("chat", "0005_message_search_statistics")


def _migrate(targets: list[tuple[str, str]]) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor


def _old_data(apps: Any) -> dict[str, list]:
    """Two conversations of several turns and an empty one, as the schema before made them."""
    Conversation, Turn, Message, SessionItem, UsageRecord = (
        apps.get_model("chat", name) for name in ("Conversation", "Turn", "Message", "SessionItem", "UsageRecord")
    )
    start = timezone.now() - timedelta(days=3)
    made: dict[str, list] = {}
    for conversation_id, turns in (("old1", 3), ("old2", 1), ("empty", 0)):
        Conversation.objects.create(id=conversation_id, model="gpt-4o", title=conversation_id)
        made[conversation_id] = []
        for number in range(turns):
            turn = Turn.objects.create(conversation_id=conversation_id, model="gpt-4o", status="complete")
            # Created out of order: the path follows `created_at`, not insertion.
            moment = start + timedelta(minutes=(20, 5, 40)[number])
            Turn.objects.filter(id=turn.id).update(created_at=moment)
            Message.objects.create(turn=turn, position=0, kind="user", content=f"{conversation_id} q{number}")
            Message.objects.create(turn=turn, position=1, kind="assistant", content=f"{conversation_id} a{number}")
            SessionItem.objects.create(
                conversation_id=conversation_id, turn=turn, data={"role": "user", "content": f"q{number}"}
            )
            UsageRecord.objects.create(conversation_id=conversation_id, turn=turn, model="gpt-4o", input_tokens=3)
            made[conversation_id].append((moment, turn.id, number))
    SessionItem.objects.create(conversation_id="old1", turn=None, data={"role": "user", "content": "imported"})
    return made


def test_existing_conversations_become_one_path_each():
    executor = _migrate([BEFORE])
    made = _old_data(executor.loader.project_state([BEFORE]).apps)
    _migrate(executor.loader.graph.leaf_nodes())

    for conversation_id, rows in made.items():
        numbers = [number for _, _, number in sorted(rows)]
        turn_ids = [turn_id for _, turn_id, _ in sorted(rows)]
        turns = list(Turn.objects.filter(conversation_id=conversation_id).order_by("created_at"))
        assert [turn.id for turn in turns] == turn_ids
        assert [turn.parent_id for turn in turns] == [None, *turn_ids][: len(turn_ids)]
        assert len({turn.prompt_id for turn in turns}) == len(turns)  # a user message each
        leaf = Conversation.objects.get(id=conversation_id).active_leaf_id
        assert leaf == (turn_ids[-1] if turn_ids else None)
        shown = selectors.conversation_display_messages(conversation_id=conversation_id, active_leaf=leaf)
        expected = [f"{conversation_id} {kind}{number}" for number in numbers for kind in ("q", "a")]
        assert [entry["content"] for entry in shown] == expected
        assert [entry["id"] for entry in shown if entry["role"] == "user"] == [str(turn.prompt_id) for turn in turns]
        assert all("branch" not in entry for entry in shown)
    replay = selectors.session_items(conversation_id="old1", leaf=max(made["old1"])[1])
    assert [item["content"] for item in replay] == ["q0", "q1", "q2", "imported"]  # every item, as stored


def test_an_imports_replay_items_get_their_turns():
    """chat/migrations/0007: an earlier import of our export stored its replay with no turn;
    the model must be sent a branch's turns only."""
    before = ("chat", "0006_search_speed")
    executor = _migrate([before])
    apps = executor.loader.project_state([before]).apps
    Conversation, Turn, Message, SessionItem = (
        apps.get_model("chat", name) for name in ("Conversation", "Turn", "Message", "SessionItem")
    )
    Conversation.objects.create(id="imported", model="gpt-4o")
    start, turns = timezone.now() - timedelta(days=1), []
    for number, question in enumerate(["q0", "q1", "q0"]):  # a question asked twice
        turn = Turn.objects.create(
            conversation_id="imported", model="gpt-4o", status="complete", parent=turns[-1] if turns else None
        )
        Turn.objects.filter(id=turn.id).update(created_at=start + timedelta(minutes=number))
        Message.objects.create(turn=turn, position=0, kind="user", content=question)
        turns.append(turn)
    Conversation.objects.filter(id="imported").update(active_leaf=turns[-1])
    replay = [
        {"role": "system", "content": "before any turn"},
        {"role": "user", "content": "q0"},
        {"type": "function_call", "call_id": "c1", "name": "ls", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "a.md"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "a0"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "q1"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "a1"}]},
        {"role": "user", "content": "q0"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "a2"}]},
    ]
    for data in replay:
        SessionItem.objects.create(conversation_id="imported", turn=None, data=data)
    _migrate(executor.loader.graph.leaf_nodes())

    items = SessionItem.objects.filter(conversation_id="imported").order_by("id")
    owners = list(items.values_list("turn_id", flat=True))
    first, second, third = (turn.id for turn in turns)
    assert owners == [None, first, first, first, first, second, second, third, third]
    # Regenerating the last answer replays the turns before it, and the item of no turn.
    assert selectors.session_items(conversation_id="imported", leaf=second) == replay[:7]


def test_messages_written_before_the_search_migrations_are_found_by_their_owner(django_user_model):
    """0006_search_speed (SQLite) and 0008_search_postgres_scope (PostgreSQL) fill in each
    existing message's conversation and owner: a search finds them, for their owner only."""
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    executor = _migrate([BEFORE])
    _old_data(executor.loader.project_state([BEFORE]).apps)
    Conversation.objects.filter(id="old1").update(owner_id=alice.id)
    _migrate(executor.loader.graph.leaf_nodes())

    assert [hit.conversation.id for hit in conversation_search(query="q2", owner_id=alice.id)] == ["old1"]
    assert conversation_search(query="q2", owner_id=bob.id) == []
    assert {hit.conversation.id for hit in conversation_search(query="a0")} == {"old1", "old2"}
