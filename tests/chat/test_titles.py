"""Titles made by a model after the first turn, through the real SDK and LiteLLM routes against
the fake provider: never holding up the reply, in the ledger as kind `title`, and a failure
keeps the first-message title."""

from __future__ import annotations

import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from chat.apps import _title_model_check
from chat.catalog import catalog_get
from chat.models import Conversation, UsageKind, UsageRecord
from chat.titles import title_clean, titles_settle
from tests.fake_provider import error, text

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_model_titles_the_conversation_after_its_first_turn(ws, provider):
    provider.script(
        text("Here is a plan for three days.", usage=(50, 9, 0)), text("Lisbon trip plan", usage=(70, 4, 0))
    )
    with override_settings(TITLE_MODEL="claude-sonnet-4-5"):  # the LiteLLM route
        events = await ws.turn("Plan a trip to Lisbon for me please")
        assert (await Conversation.objects.aget(id="conv1")).title == "Plan a trip to Lisbon for me please"
        await titles_settle(10)
    assert (await Conversation.objects.aget(id="conv1")).title == "Lisbon trip plan"
    assert events[-1]["usage"]["requests"] == 1  # the turn's own totals
    asked = provider.requests[1]
    assert asked.path.endswith("/messages")  # Anthropic's, through LiteLLM
    assert "You name conversations" in str(asked.body["system"])
    assert "Plan a trip to Lisbon" in str(asked.body["messages"]) and "three days" in str(asked.body["messages"])
    row = await UsageRecord.objects.aget(kind=UsageKind.TITLE)
    assert (row.conversation_id, row.turn_id, row.model) == ("conv1", None, "claude-sonnet-4-5")
    assert (row.input_tokens, row.output_tokens) == (70, 4) and row.cost_usd > 0
    # Only after the first turn.
    provider.script(text("Sure."))
    with override_settings(TITLE_MODEL="claude-sonnet-4-5"):
        await ws.turn("Add a day in Sintra")
        await titles_settle(10)
    assert len(provider.requests) == 3


async def test_the_reply_never_waits_for_the_title(ws, provider):
    provider.script(text("Answer."), text("Slow title", ttft=1.5))
    with override_settings(TITLE_MODEL="gpt-4o-mini"):
        started = time.monotonic()
        await ws.turn("Quick question")
        assert time.monotonic() - started < 1.0
        await titles_settle(10)
    assert (await Conversation.objects.aget(id="conv1")).title == "Slow title"


async def test_a_failed_title_keeps_the_first_message(ws, provider):
    provider.script(text("Answer."), error(500, "title model down"))
    with override_settings(TITLE_MODEL="gpt-4o-mini"):  # the SDK's native route
        events = await ws.turn("What is a heron?")
        await titles_settle(10)
    assert events[-1]["finish_reason"] == "stop"
    assert (await Conversation.objects.aget(id="conv1")).title == "What is a heron?"
    assert not await UsageRecord.objects.filter(kind=UsageKind.TITLE).aexists()


@pytest.mark.parametrize("setting", ["none", None])  # None: the local model, which these tests turn off
async def test_no_title_model_no_request(ws, provider, setting):
    provider.script(text("Answer."))
    with override_settings(TITLE_MODEL=setting):
        await ws.turn("What is a heron?")
        await titles_settle(10)
    assert len(provider.requests) == 1
    assert (await Conversation.objects.aget(id="conv1")).title == "What is a heron?"


async def test_a_failed_turn_gets_no_title(ws, provider):
    provider.script(error(400, "bad request"))
    with override_settings(TITLE_MODEL="gpt-4o-mini"):
        events = await ws.turn("What is a heron?")
        await titles_settle(10)
    assert events[-1]["finish_reason"] == "error" and len(provider.requests) == 1


def test_an_unknown_title_model_stops_start_up(provider):
    with override_settings(TITLE_MODEL="no-such-model"), pytest.raises(ImproperlyConfigured, match="TITLE_MODEL"):
        _title_model_check(catalog_get())
    with override_settings(TITLE_MODEL="gpt-4o"):
        _title_model_check(catalog_get())


@pytest.mark.parametrize(
    ("answer", "title"),
    [
        ('"Lisbon trip plan."', "Lisbon trip plan"),
        ("Title: Herons\nThey are birds", "Herons"),
        ("**Sourdough care**", "Sourdough care"),
        ("\n\n  Rust   borrows  \n", "Rust borrows"),
        ("word " * 30, ("word " * 11).strip() + "…"),
        ("", ""),
    ],
)
def test_the_answer_is_cleaned_into_a_title(answer, title):
    cleaned = title_clean(answer)
    assert cleaned == title and len(cleaned) <= 60
