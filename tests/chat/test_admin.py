"""The admin: a superuser can inspect conversations, turns, tool calls and the ledger."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from tests.conftest import connect
from tests.fake_provider import text, tools

pytestmark = pytest.mark.django_db(transaction=True)


async def test_admin_pages_load_for_a_superuser(provider, async_client):
    provider.script(tools(("ls", {})), text("done"))
    socket = await connect("adm1")
    events = await socket.turn("inspect me")
    await socket.communicator.disconnect()
    admin = await User.objects.acreate_superuser("root", "root@example.com", "pw")
    await async_client.aforce_login(admin)
    turn_id = events[0]["message_id"]
    pages = [
        "/admin/",
        "/admin/chat/conversation/",
        "/admin/chat/conversation/?q=inspect",
        "/admin/chat/conversation/adm1/change/",
        "/admin/chat/turn/",
        f"/admin/chat/turn/{turn_id}/change/",
        "/admin/chat/toolcall/",
        "/admin/chat/usagerecord/",
    ]
    for page in pages:
        response = await async_client.get(page)
        assert response.status_code == 200, page
    listing = (await async_client.get("/admin/chat/conversation/?q=inspect")).content.decode()
    assert "adm1" in listing
    ledger = (await async_client.get("/admin/chat/usagerecord/")).content.decode()
    assert "Usage ledger" in ledger and "input" in ledger
    change = (await async_client.get("/admin/chat/conversation/adm1/change/")).content.decode()
    assert "function_call" in change  # replay items inline, read-only


async def test_admin_requires_login(async_client):
    response = await async_client.get("/admin/chat/conversation/")
    assert response.status_code == 302


async def test_a_conversations_page_shows_its_tree(provider, async_client):
    provider.script(text("first answer"), text("second answer"))
    socket = await connect("adm2")
    first = (await socket.turn("the question"))[-1]["message_id"]
    await socket.send({"type": "regenerate", "message_id": first})
    second = (await socket.until_end())[-1]["message_id"]
    await socket.communicator.disconnect()
    admin = await User.objects.acreate_superuser("root", "root@example.com", "pw")
    await async_client.aforce_login(admin)
    page = (await async_client.get("/admin/chat/conversation/adm2/change/")).content.decode()
    assert page.count("the question") >= 1 and "first answer" in page and "second answer" in page
    assert f"<li style='font-weight:bold'>🤖 second answer <a href='/admin/chat/turn/{second}/change/'>" in page
    assert f"<li>🤖 first answer <a href='/admin/chat/turn/{first}/change/'>" in page
