"""The existing frontend against the real server (issue 29): the page of tests/frontend_client.py
(App.tsx as it is: several sockets of one page on one conversation, a GET then a connect 100 ms
later, 3 s reconnect timers) must show every reply whole and once, live exactly as
`GET /conversations/<id>` restores it, on runserver, daphne and uvicorn, and on two uvicorn
workers that share PostgreSQL and Redis (the page's sockets and requests alternating between
them, as behind a load balancer). v2 sockets (../shared/PROTOCOL.md, "Two kinds of socket") keep
getting every turn on every socket.

TURN_DETACH_GRACE is the default (60 s), as the issue's user had it: a reload does not stop the
reply. What the page shows is compared with what another client (no Origin, its own
User-Agent) GETs, so the check is no request of the page's.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from websockets.asyncio.client import ClientConnection, connect

from tests.chat.frontend import without_empty
from tests.fake_provider import FakeProvider, text, tools
from tests.frontend_client import ORIGIN, USER_AGENT, FrontendClient
from tests.servers import SERVERS, Server, servers_start
from tests.test_end_to_end import server_env

# A test's time includes its module fixture's: one or two servers starting.
pytestmark = pytest.mark.timeout(300)

TWO_WORKERS = "uvicorn-two-workers"
SHARED = os.environ.get("DATABASE_URL", "").startswith("postgres") and bool(os.environ.get("REDIS_URL"))
OWN_REDIS_DB = 13  # tests/test_workers.py has 14, tests/test_hostile_servers.py 15
GREEK = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau".split()
MANY_CHUNKS = tuple(f"{word}{i} " for i in (1, 2, 3) for word in GREEK)
CHECKER = {"User-Agent": "dreamytin-tests/checker"}


@dataclass
class Deployment:
    servers: list[Server]

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]


@pytest.fixture(scope="module", params=[*SERVERS, TWO_WORKERS])
def deployment(
    request: pytest.FixtureRequest, fake_server: FakeProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    if request.param == TWO_WORKERS and not SHARED:
        pytest.skip("two workers share turns through Redis and one PostgreSQL database, not SQLite")
    tmp_path = tmp_path_factory.mktemp(request.param)
    env = server_env(fake_server, tmp_path, f"frontend_{request.param.replace('-', '_')}")
    env["TURN_DETACH_GRACE"] = "60"
    if request.param == TWO_WORKERS:
        env["REDIS_URL"] = urlsplit(os.environ["REDIS_URL"])._replace(path=f"/{OWN_REDIS_DB}").geturl()
        redis.Redis.from_url(env["REDIS_URL"]).flushdb()
        starters = [partial(Server, "uvicorn", env, tmp_path / f"uvicorn-{i}.log", start_timeout=180) for i in (1, 2)]
    else:
        starters = [partial(Server, request.param, env, tmp_path / "server.log", start_timeout=180)]
    servers = servers_start(starters)
    yield Deployment(servers)
    for server in servers:
        server.stop()


@pytest.fixture
async def user(deployment: Deployment, fake: FakeProvider) -> AsyncIterator[FrontendClient]:
    client = FrontendClient(deployment.urls)
    yield client
    await client.close()


async def restored(deployment: Deployment, conversation_id: str) -> list[dict[str, Any]]:
    """`GET /conversations/<id>` once no turn runs on it (from the last server: with two
    workers, the one the page did not start on)."""
    async with httpx.AsyncClient(headers=CHECKER, timeout=10) as http:
        for _ in range(400):
            body = (await http.get(f"{deployment.urls[-1]}/conversations/{conversation_id}")).json()
            if "live" not in body:
                return body["messages"]
            await asyncio.sleep(0.05)
    raise AssertionError(f"the turn on {conversation_id} never ended")


async def still_live(deployment: Deployment, conversation_id: str) -> bool:
    async with httpx.AsyncClient(headers=CHECKER, timeout=10) as http:
        return "live" in (await http.get(f"{deployment.urls[-1]}/conversations/{conversation_id}")).json()


def seen(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the page shows of each entry (GET's extra fields are not shown), without the empty
    assistant entries that GET leaves out."""
    shown = ("role", "content", "toolName", "toolResult")
    return [{key: m[key] for key in shown if key in m} for m in without_empty(messages)]


def shown_once(shown: str, expected: str) -> str:
    """'' when the reply shows as it was sent, else where it first goes wrong."""
    if shown == expected:
        return ""
    at = next(
        (i for i, (a, b) in enumerate(zip(shown, expected, strict=False)) if a != b), min(len(shown), len(expected))
    )
    return (
        f"the reply shows {len(shown)} characters for {len(expected)} sent; from character {at}:\n"
        f"  shown: …{shown[max(0, at - 40) : at + 80]!r}\n"
        f"  sent:  …{expected[max(0, at - 40) : at + 80]!r}\n"
        f"  shown in full: {shown!r}"
    )


async def reply_and_check(
    user: FrontendClient, deployment: Deployment, conversation_id: str, message: str, reply: str
) -> None:
    """Send `message` and wait for it: its last text shows `reply` once, and the page shows
    exactly what a reload restores."""
    await user.send(message)
    await user.wait_idle()
    assert not (wrong := shown_once(user.messages[-1]["content"], reply)), wrong + "\n" + user.page.describe()
    assert seen(user.messages) == seen(await restored(deployment, conversation_id)), user.page.describe()


# Flow 1: a switch leaves the page several sockets on one conversation.


async def to_b_and_back(user: FrontendClient, fake: FakeProvider) -> str:
    """Open A (the page's own new conversation), chat once, "+" for B, back to A in the sidebar."""
    a = await user.start()
    fake.script(text("Hello ", "there."))
    await user.send("hi")
    await user.wait_idle()
    assert [m["content"] for m in user.messages] == ["hi", "Hello there."]
    await user.new_conversation()
    await user.select(a)
    return a


async def test_after_a_switch_every_reply_shows_whole_and_once(deployment, fake, user):
    a = await to_b_and_back(user, fake)
    await user.wait_idle()  # "wait 4 s": the page's reconnect timers fire
    # Three on A when the first socket's close beat the second's open, as in the issue; else two.
    assert len(user.page.open_sockets(a)) >= 2, user.page.describe()
    fake.script(text(*MANY_CHUNKS))
    await reply_and_check(user, deployment, a, "the greek letters", "".join(MANY_CHUNKS))
    fake.script(
        tools(("read_file", {"path": "todo.md"}), text=["Checking ", "your ", "list."]),
        text(*MANY_CHUNKS[:20]),
    )
    await reply_and_check(user, deployment, a, "what is on my list?", "".join(MANY_CHUNKS[:20]))
    assert [(m["role"], m["content"]) for m in user.messages[-4:]] == [
        ("user", "what is on my list?"),
        ("assistant", "Checking your list."),
        ("tool", "🔧 read_file"),
        ("assistant", "".join(MANY_CHUNKS[:20])),
    ], user.messages[-4:]
    assert user.messages[-2]["toolResult"] == "- write tests\n"


async def test_a_reply_sent_before_the_reconnects_shows_whole_and_once(deployment, fake, user):
    """Sent at once on the socket the sidebar click opened: the page's two other sockets on A
    (the 3 s reconnects) open while the reply streams."""
    a = await to_b_and_back(user, fake)
    chunks = tuple(f"{word}{i} " for i in range(6) for word in GREEK)  # 4.5 s at 30 ms a chunk
    fake.script(text(*chunks, interval=0.03))
    await user.send("the greek letters, slowly")
    await user.page.until(user.page.reconnected, "the reconnects")
    assert len(user.page.open_sockets(a)) >= 2, user.page.describe()
    assert await still_live(deployment, a), "the reply ended before the reconnects: make it longer"
    await user.wait_idle()
    assert not (wrong := shown_once(user.messages[-1]["content"], "".join(chunks))), wrong
    assert seen(user.messages) == seen(await restored(deployment, a))


# Flow 2: a reload in the middle of a reply, then the conversation opened from the sidebar.


async def test_a_reload_mid_reply_continues_it_with_no_gap_and_no_duplicate(deployment, fake, user):
    a = await user.start()
    words = tuple(f"word{i} " for i in range(300))  # 6 s at 20 ms a word
    fake.script(text(*words, interval=0.02))
    await user.send("write 300 words")
    await user.page.until(lambda: user.messages[-1]["content"].count(" ") >= 25, "25 words shown")
    await user.reload()
    conversation = await user.select(a)  # a GET, then a socket 100 ms later
    assert "live" in conversation, "the reply ended before the reload: make it longer"
    restored_part = conversation["messages"][-1]["content"]
    assert restored_part.startswith("word0 word1 ")
    # The page's first socket (its own new conversation's) closed on the switch: 3 s later its
    # timer opens a second socket on A.
    await user.page.until(user.page.reconnected, "the reconnect")
    assert len(user.page.open_sockets(a)) == 2, user.page.describe()
    assert await still_live(deployment, a), "the reply ended before the reconnect: make it longer"
    await user.wait_idle()
    wrong = shown_once(user.messages[-1]["content"], "".join(words))
    assert not wrong, f"the GET showed {len(restored_part)} characters; {wrong}"
    assert seen(user.messages) == seen(await restored(deployment, a))


# v2 sockets: every socket gets every turn.


async def v2_socket(url: str, conversation_id: str, how: str) -> ClientConnection:
    """A socket of the same client as the page (Origin, User-Agent) that declares itself v2."""
    query = "?after_seq=0" if how == "after_seq" else ""
    ws = await connect(
        f"{url.replace('http', 'ws', 1)}/ws/{conversation_id}{query}",
        origin=ORIGIN,
        user_agent_header=USER_AGENT,
        open_timeout=10,
    )
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connected"
    if how == "hello":
        await ws.send(json.dumps({"type": "hello", "protocol": 2}))
        answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert {k: answer.get(k) for k in ("type", "protocol")} == {"type": "hello", "protocol": 2}, answer
    elif how == "resume":
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
    return ws


async def turn_events(ws: ClientConnection) -> list[dict[str, Any]]:
    """The events of the next turn the socket sees, up to its stream_end."""
    events: list[dict[str, Any]] = []
    while not events or events[-1]["type"] != "stream_end":
        event = json.loads(await asyncio.wait_for(ws.recv(), 20))
        if "seq" in event:  # a turn's (not `resume_end`, `hello`)
            events.append(event)
    return events


@pytest.mark.parametrize("how", ["hello", "after_seq", "resume"])
async def test_each_v2_socket_of_a_client_gets_every_turn(deployment, fake, how):
    conversation_id = uuid.uuid4().hex[:12]
    fake.script(text(*MANY_CHUNKS[:10]), text(*MANY_CHUNKS[10:20]))
    first = await v2_socket(deployment.urls[0], conversation_id, how)
    second = await v2_socket(deployment.urls[-1], conversation_id, how)
    try:
        for sender, chunks in ((first, MANY_CHUNKS[:10]), (second, MANY_CHUNKS[10:20])):
            await sender.send(json.dumps({"message": "letters", "model": "gpt-4o"}))
            seen_first, seen_second = await turn_events(first), await turn_events(second)
            assert seen_first == seen_second  # frame for frame
            assert "".join(e.get("content", "") for e in seen_first) == "".join(chunks)
            assert [e["seq"] for e in seen_first] == list(range(1, len(seen_first) + 1))
    finally:
        await first.close()
        await second.close()
