"""A refused `regenerate` or `edit` (issue 30, "bad input") changes nothing: no row, no budget
hold, and no count against the user's turn rate limit."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from accounts.models import BudgetHold
from accounts.tokens import token_create
from chat.models import Conversation, Turn, TurnStatus
from dreamytin.config import Rate
from tests.accounts.sockets import open_socket, unique_loopback
from tests.chat.test_branches import tree_state
from tests.fake_provider import text

pytestmark = pytest.mark.django_db(transaction=True)


async def until_end(socket: Any) -> list[dict[str, Any]]:
    events = []
    while (event := await socket.receive_json_from(timeout=10))["type"] != "stream_end":
        events.append(event)
    return [*events, event]


async def socket_on(conversation_id: str) -> Any:
    """A socket from an address of its own: its turns are the only ones its rate limit counts."""
    accepted, _, socket = await open_socket(f"/ws/{conversation_id}", address=unique_loopback())
    assert accepted and (await socket.receive_json_from())["type"] == "connected"
    return socket


async def another_workers_turn(conversation_id: str, parent: str) -> Turn:
    """A turn running on another worker: its row, leased now, and no task in this process."""
    return await Turn.objects.acreate(
        conversation_id=conversation_id, model="gpt-4o", parent_id=parent, status=TurnStatus.STREAMING
    )


async def test_refused_branch_frames_count_against_no_limit_and_hold_no_budget(provider, async_client):
    with override_settings(RATE_LIMIT_TURNS=Rate(2, 3600), BUDGET_USD_PER_DAY=Decimal(100)):
        other = await socket_on("refusals2")
        provider.script(text("elsewhere"), text("one"), text("two"))
        await other.send_json_to({"message": "elsewhere"})
        foreign = (await until_end(other))[-1]["message_id"]  # another conversation's turn
        socket = await socket_on("refusals1")
        await socket.send_json_to({"message": "hello"})
        turn = (await until_end(socket))[-1]["message_id"]  # the address's first turn of two
        body = (await async_client.get("/conversations/refusals1")).json()
        user = body["messages"][0]["id"]
        before = await tree_state(), await BudgetHold.objects.acount()

        refused = [
            ({"type": "regenerate", "message_id": "00000000-0000-0000-0000-000000000000"}, "unknown_message"),
            ({"type": "regenerate", "message_id": foreign}, "unknown_message"),
            ({"type": "regenerate", "message_id": user}, "not_a_reply"),
            ({"type": "edit", "message_id": turn, "message": "x"}, "not_a_user_message"),
            ({"type": "edit", "message_id": foreign, "message": "x"}, "unknown_message"),
            # These two are refused by frame_parse, before the check: here for their codes.
            ({"type": "edit", "message_id": user, "message": "  "}, "empty_message"),
            ({"type": "edit", "message_id": user, "message": "x" * 200_000}, "message_too_large"),
        ]
        for frame, code in refused:
            await socket.send_json_to(frame)
            error = await socket.receive_json_from()
            assert (error["type"], error["code"]) == ("error", code), frame

        running = await another_workers_turn("refusals1", turn)
        for frame in ({"type": "regenerate", "message_id": turn}, {"type": "edit", "message_id": user, "message": "y"}):
            await socket.send_json_to(frame)
            assert (await socket.receive_json_from())["code"] == "busy"
        await running.adelete()
        assert (await tree_state(), await BudgetHold.objects.acount()) == before

        await socket.send_json_to({"type": "regenerate", "message_id": turn})  # the second turn: allowed
        assert (await until_end(socket))[0]["content"] == "two"
        await socket.send_json_to({"message": "a third"})
        assert (await socket.receive_json_from())["code"] == "rate_limited"
        assert len(provider.requests) == 3
        for each in (socket, other):
            await each.disconnect()


async def test_a_branch_frame_says_nothing_of_another_users_conversation(provider, async_client, django_user_model):
    alice = await django_user_model.objects.acreate(username="alice")
    bob = await django_user_model.objects.acreate(username="bob")
    _, raw = await sync_to_async(token_create)(user=alice)
    with override_settings(AUTH_MODE="django"):
        accepted, _, socket = await open_socket("/ws/given1", subprotocols=["bearer", raw])
        assert accepted and (await socket.receive_json_from())["type"] == "connected"
        provider.script(text("hers"))
        await socket.send_json_to({"message": "hello"})
        turn = (await until_end(socket))[-1]["message_id"]
        as_alice = {"headers": {"Authorization": f"Bearer {raw}"}}
        user = (await async_client.get("/conversations/given1", **as_alice)).json()["messages"][0]["id"]
        # The conversation is now bob's (given away while her socket is open), a reply of his running.
        await Conversation.objects.filter(id="given1").aupdate(owner=bob)
        await another_workers_turn("given1", turn)

        for frame in (
            {"message": "hello again"},  # what turn_start answers her
            {"type": "regenerate", "message_id": turn},  # else `busy`
            {"type": "regenerate", "message_id": user},  # else `not_a_reply`
            {"type": "regenerate", "message_id": "00000000-0000-0000-0000-000000000000"},  # else `unknown_message`
            {"type": "edit", "message_id": turn, "message": "x"},  # else `not_a_user_message`
        ):
            await socket.send_json_to(frame)
            error = await socket.receive_json_from()
            assert (error["type"], error["code"]) == ("error", "not_found"), frame
        assert len(provider.requests) == 1
        await socket.disconnect()
