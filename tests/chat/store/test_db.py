"""Writes batched across callers (`db_batched`, every running turn's flush): each caller gets
its own result or its own failure, and what the others wrote stands."""

from __future__ import annotations

import asyncio

import pytest

from chat.models import Conversation
from chat.store.db import db_async, db_batched

pytestmark = pytest.mark.django_db(transaction=True)


def _title_set(*, conversation_id: str, title: str) -> str:
    updated = Conversation.objects.filter(id=conversation_id).update(title=title)
    if title == "refused":
        raise ValueError(f"refused for {conversation_id}")  # after its write: its transaction is undone
    return f"{conversation_id}:{updated}"


_titles_set = db_batched(_title_set)


def _titles() -> dict[str, str]:
    return dict(Conversation.objects.values_list("id", "title"))


async def test_calls_made_together_each_get_their_own_outcome():
    ids = [f"c{n}" for n in range(6)]
    await db_async(Conversation.objects.bulk_create)([Conversation(id=i, model="gpt-4o") for i in ids])
    titles = ["refused" if i == "c3" else f"title {i}" for i in ids]
    outcomes = await asyncio.gather(
        *(_titles_set(conversation_id=i, title=t) for i, t in zip(ids, titles, strict=True)), return_exceptions=True
    )

    assert [o if isinstance(o, str) else repr(o) for o in outcomes] == [
        "c0:1", "c1:1", "c2:1", "ValueError('refused for c3')", "c4:1", "c5:1"
    ]  # fmt: skip
    stored = await db_async(_titles)()
    assert stored == {i: ("" if i == "c3" else f"title {i}") for i in ids}


async def test_a_lone_call_fails_as_its_function_does():
    await db_async(Conversation.objects.create)(id="lone", model="gpt-4o")
    with pytest.raises(ValueError, match="refused for lone"):
        await _titles_set(conversation_id="lone", title="refused")
    assert await _titles_set(conversation_id="lone", title="kept") == "lone:1"
    assert (await db_async(_titles)())["lone"] == "kept"
