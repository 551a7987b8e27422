"""`GET /conversations?q=`: full-text over titles and every message, ranked, with a snippet,
only the caller's own, kept in step with the messages by the database itself."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from accounts.tokens import token_create
from chat import search, search_postgres
from chat.models import LEASE_STALE_AFTER, Conversation, Message, MessageKind, Turn, TurnStatus
from chat.store import services
from tests.fake_provider import text, tools

pytestmark = pytest.mark.django_db(transaction=True)


def chat(conversation_id: str, user: str, *replies: str, owner_id: int | None = None) -> None:
    """A finished turn, written as a turn writes it (`turn_start`, then `turn_flush`)."""
    turn, _ = services.turn_start(conversation_id=conversation_id, model="gpt-4o", user_message=user, owner_id=owner_id)
    entries = [
        services.EntryWrite(position, {"kind": MessageKind.ASSISTANT, "content": reply}, True)
        for position, reply in enumerate(replies, start=1)
    ]
    services.turn_flush(
        turn_id=turn.id,
        conversation_id=conversation_id,
        entries=entries,
        session_items=[],
        usage_rows=[],
        end=services.TurnEnd(TurnStatus.COMPLETE, "stop"),
    )


def found(client, q: str, **headers) -> list[dict]:
    response = client.get("/conversations", {"q": q}, **headers)
    assert response.status_code == 200, response.json()
    return response.json()["conversations"]


async def test_a_word_of_a_reply_or_a_tool_result_finds_its_conversation(client, ws, provider, workspace):
    (workspace / "quokka-census.csv").write_text("1,2,3\n")
    provider.script(tools(("ls", {})), text("The folder has one spreadsheet of marsupials."))
    await ws.turn("What is in my folder?")
    other = await ws_other(provider)
    hits = await _afound(client, "quokka")  # only in the tool's result
    assert [hit["id"] for hit in hits] == ["conv1"]
    assert "**quokka**" in hits[0]["match"]["snippet"]
    hits = await _afound(client, "marsupials")  # the assistant's text
    assert [hit["id"] for hit in hits] == ["conv1"]
    assert hits[0]["title"] == "What is in my folder?" and hits[0]["message_count"] == 3
    assert [hit["id"] for hit in await _afound(client, "giraffes")] == [other]


async def ws_other(provider) -> str:
    from tests.conftest import connect

    socket = await connect("conv2")
    provider.script(text("Giraffes sleep standing up."))
    await socket.turn("Tell me about sleep")
    await socket.communicator.disconnect()
    return "conv2"


async def _afound(client, q: str) -> list[dict]:
    from asgiref.sync import sync_to_async

    return await sync_to_async(found)(client, q)


def test_the_best_match_first_and_the_title_counts(client):
    chat("once", "A question about cooking", "Add some saffron at the end.")
    chat("often", "Saffron risotto", "Saffron goes in with the broth; saffron threads, not powder.")
    chat("never", "Something else", "Nothing to see here.")
    hits = found(client, "saffron")
    assert [hit["id"] for hit in hits] == ["often", "once"]
    assert hits[0]["match"]["snippet"] and "**" in hits[0]["match"]["snippet"]
    # A title alone is enough, and its words are highlighted.
    Conversation.objects.filter(id="never").update(title="Notes on pelicans")
    hits = found(client, "pelicans")
    assert [hit["id"] for hit in hits] == ["never"]
    assert hits[0]["match"]["snippet"] == "Notes on **pelicans**"


def test_words_are_stemmed_and_query_syntax_is_just_characters(client):
    chat("runs", "How do I stop my dog running away?", "Fences help.")
    assert [hit["id"] for hit in found(client, "runs")] == ["runs"]
    for hostile in ['"dog', "dog*", "NEAR(dog", "-dog", "dog:fences", "dog OR", "'dog'", "dog\\"]:
        assert [hit["id"] for hit in found(client, hostile)] == ["runs"], hostile


def test_the_index_follows_every_write(client):
    chat("edited", "Tell me a story", "Once upon a time")
    message = Message.objects.get(turn__conversation_id="edited", position=1)
    # A streamed reply is rewritten as it grows: the index holds its latest text only.
    services.message_save(turn_id=message.turn_id, position=1, fields={"content": "A dragon lived in a cave"})
    assert found(client, "dragon")[0]["id"] == "edited"
    assert found(client, "upon") == []
    services.conversation_delete(conversation_id="edited")
    assert found(client, "dragon") == []


@pytest.mark.parametrize(
    ("q", "detail"),
    [("", "no words"), ("   ", "no words"), ("?!...", "no words"), ("x" * 501, "too long")],
)
def test_a_search_with_no_words_or_too_long_is_refused_clearly(client, q, detail):
    response = client.get("/conversations", {"q": q})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_query" and detail in response.json()["detail"]


def test_limit_and_no_match(client):
    for index in range(5):
        chat(f"c{index}", f"Question {index} about lighthouses")
    assert len(found(client, "lighthouses")) == 5
    assert len(client.get("/conversations", {"q": "lighthouses", "limit": 2}).json()["conversations"]) == 2
    assert client.get("/conversations", {"q": "lighthouses", "limit": 0}).status_code == 400
    assert found(client, "nothingmatchesthis") == []
    # Without q, the whole list as before, without `match`.
    listed = client.get("/conversations").json()["conversations"]
    assert len(listed) == 5 and "match" not in listed[0]


def test_words_in_most_messages_rank_the_newest_that_hold_them_all(client, monkeypatch):
    monkeypatch.setattr(search, "FREQUENT_MESSAGES", 3)
    monkeypatch.setattr(search, "FREQUENT_RANKED", 10)
    chat("old", "weather report", "weather today")
    chat("mid", "weather only", "nothing else")
    chat("new", "weather report again", "report says weather")
    # Both words are "frequent": the messages must hold both.
    assert {hit["id"] for hit in found(client, "weather report")} == {"old", "new"}
    # A rarer word chooses the messages; the common ones still rank them: the shorter message
    # holds the rare word alone, and comes second.
    for number in range(12):  # so that "weather" is in fewer than half the messages, as common words are
        chat(f"filler{number}", f"unrelated question {number}", "unrelated answer")
    chat("rare", "weather report with hailstones")
    chat("rare-alone", "big hailstones fell")
    assert [hit["id"] for hit in found(client, "weather hailstones")][:2] == ["rare", "rare-alone"]


def test_only_the_callers_own_conversations(client, django_user_model):
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    chat("alice-1", "My secret recipe for baklava", owner_id=alice.id)
    chat("bob-1", "Bob's baklava", owner_id=bob.id)
    with override_settings(AUTH_MODE="django"):
        _, raw = token_create(user=alice)
        hits = found(client, "baklava", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert [hit["id"] for hit in hits] == ["alice-1"]


def test_a_conversation_given_to_another_user_is_found_by_them_only(client, django_user_model):
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    chat("gift", "Notes on falconry", "Falcons need a mews.", owner_id=alice.id)
    Conversation.objects.filter(id="gift").update(owner=bob)
    with override_settings(AUTH_MODE="django"):
        for user, expected in ((alice, []), (bob, ["gift"])):
            _, raw = token_create(user=user)
            for q in ("falconry", "mews"):  # its title, its message
                assert [hit["id"] for hit in found(client, q, HTTP_AUTHORIZATION=f"Bearer {raw}")] == expected


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="nothing moves a turn; only PostgreSQL's search scope follows one (trigger chat_turn_search_scope)",
)
def test_a_turn_moved_and_a_conversation_given_after_their_messages_are_found_by_their_owners_only(
    client, django_user_model
):
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    chat("gift", "Notes on falconry", "Falcons need a mews.", owner_id=alice.id)
    chat("hers", "Kestrels at dawn", owner_id=alice.id)
    chat("his", "Ospreys fishing", owner_id=bob.id)
    chat("his", "Buzzards soaring", "Buzzards ride thermals.", owner_id=bob.id)
    Conversation.objects.filter(id="gift").update(owner=bob)
    Turn.objects.filter(messages__content="Buzzards soaring").update(conversation_id="hers")
    expected = {
        alice: {"falconry": [], "mews": [], "kestrels": ["hers"], "buzzards": ["hers"], "thermals": ["hers"]},
        bob: {"falconry": ["gift"], "mews": ["gift"], "ospreys": ["his"], "buzzards": [], "thermals": []},
    }
    with override_settings(AUTH_MODE="django"):
        for user, words in expected.items():
            _, raw = token_create(user=user)
            for q, ids in words.items():
                hits = found(client, q, HTTP_AUTHORIZATION=f"Bearer {raw}")
                assert [hit["id"] for hit in hits] == ids, (user.username, q)


def test_words_in_most_messages_a_short_message_about_them_outranks_a_passing_mention(client, monkeypatch):
    monkeypatch.setattr(search, "FREQUENT_MESSAGES", 2)
    chat("passing", "tell me a story", "It was a long day and " + "the road went on " * 10 + "with weather report.")
    chat("about", "weather report", "The weather report: weather fine, report ends.")
    chat("other", "weather", "report")
    assert [hit["id"] for hit in found(client, "weather report")][:2] == ["about", "passing"]


def test_words_in_most_messages_are_looked_for_in_the_newest_conversations(client, monkeypatch):
    monkeypatch.setattr(search, "FREQUENT_MESSAGES", 2)
    monkeypatch.setattr(search, "FREQUENT_RANKED", 1)  # SQLite: the newest matching message
    monkeypatch.setattr(search_postgres, "POSTGRES_RECENT", 1)  # PostgreSQL: the newest conversation
    for name in ("older", "old", "newest"):
        chat(name, "unrelated question", "weather report")
    assert [hit["id"] for hit in found(client, "weather report")] == ["newest"]


def test_a_match_is_listed_as_the_list_lists_it(client, django_user_model):
    """The search's page rows (a statement written by hand) count what `GET /conversations`
    counts: a failed turn's error entry and a dead worker's turn count, an empty answer does not."""
    alice = django_user_model.objects.create_user("alice")
    chat("plain", "quokka facts", "Quokkas smile.", owner_id=alice.id)
    chat("empty", "quokka silence", "", owner_id=alice.id)
    failed, _ = services.turn_start(conversation_id="failed", model="gpt-4o", user_message="quokka error")
    services.turn_flush(
        turn_id=failed.id,
        conversation_id="failed",
        entries=[],
        session_items=[],
        usage_rows=[],
        end=services.TurnEnd(TurnStatus.ERROR, "error", error_code="provider_error", error="down"),
    )
    lapsed, _ = services.turn_start(conversation_id="lapsed", model="gpt-4o", user_message="quokka lapsed")
    Turn.objects.filter(id=lapsed.id).update(heartbeat_at=timezone.now() - LEASE_STALE_AFTER * 2)
    chat("running", "quokka running")
    Turn.objects.filter(conversation_id="running").update(status=TurnStatus.STREAMING, heartbeat_at=timezone.now())

    listed = {entry["id"]: entry for entry in client.get("/conversations").json()["conversations"]}
    hits = found(client, "quokka")
    assert {hit["id"] for hit in hits} == set(listed) == {"plain", "empty", "failed", "lapsed", "running"}
    for hit in hits:
        assert {key: hit[key] for key in listed[hit["id"]]} == listed[hit["id"]]
    assert {hit["id"]: hit["message_count"] for hit in hits} == {
        "plain": 2,
        "empty": 1,
        "failed": 2,
        "lapsed": 2,
        "running": 1,
    }
