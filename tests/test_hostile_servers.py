"""Hostile clients against the real servers (daphne, uvicorn) as the documented commands run
them: frames past 1 MiB, floods, too many sockets, no credentials. (The in-process app's side
is tests/chat/test_hostile_frames.py.)"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.servers import Server, database_migrated

TOKEN = "server-test-token-0123456789-abcdefghijkl"
MAX_SOCKETS = 5
OWN_REDIS_DB = 15


@pytest.fixture(scope="module", params=["daphne", "uvicorn"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp(request.param)
    env = {
        **os.environ,
        # A copy of the suite's migrated database (on the PostgreSQL pass, PostgreSQL's: a SQLite
        # one would cost that pass a migration of its own); Redis (when set) counts the sockets.
        "DATABASE_URL": database_migrated(tmp, "hostile"),
        "AUTH_MODE": "token",
        "AUTH_TOKEN": TOKEN,
        "MAX_CONNECTIONS_PER_ADDRESS": str(MAX_SOCKETS),
        "RATE_LIMIT_FRAMES": "20/sec",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    if env.get("REDIS_URL"):
        # A Redis database of its own, emptied: the socket counts of 127.0.0.1 must be this
        # server's alone, not those of the suite's in-process sockets or of an earlier run.
        env["REDIS_URL"] = env["REDIS_URL"].rpartition("/")[0] + f"/{OWN_REDIS_DB}"
        redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    running = Server(request.param, env, tmp / "server.log")
    yield running
    running.stop()


def open_ws(server: Server, conversation_id: str, **kwargs: object) -> ClientConnection:
    socket = connect(
        f"ws://127.0.0.1:{server.port}/ws/{conversation_id}",
        subprotocols=["bearer", TOKEN],  # type: ignore[list-item]
        open_timeout=5,
        max_size=None,
        **kwargs,  # type: ignore[arg-type]
    )
    assert socket.subprotocol == "bearer"
    assert '"connected"' in socket.recv(timeout=5)
    return socket


def assert_healthy(server: Server) -> None:
    # Through open_all: the sockets a test just closed can still hold their slots for a moment.
    socket = open_all(server, 1)[0]
    socket.send('{"type": "ping"}')
    assert '"pong"' in socket.recv(timeout=5)
    socket.close()
    assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200


def test_no_token_is_refused_at_the_handshake(server):
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{server.port}/ws/anon1", open_timeout=5)
    assert refused.value.response.status_code == 403  # the reason is in the server's log
    assert httpx.get(f"{server.url}/models", timeout=5).status_code == 401
    assert httpx.get(f"{server.url}/models", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_a_frame_over_one_mebibyte_is_refused_by_the_server_itself(server):
    socket = open_ws(server, "big1")
    socket.send('{"message": "' + "x" * (1024 * 1024) + '"}')
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            socket.recv(timeout=10)
    # uvicorn (--ws-max-size) closes with 1009; Daphne (--websocket-max-message-size, 1 MiB by
    # default) drops the connection with no close frame. Neither hands the frame to the app.
    assert closed.value.rcvd is None or closed.value.rcvd.code == 1009
    assert_healthy(server)


def test_a_frame_flood_is_closed_with_4429(server):
    socket = open_ws(server, "flood1")
    with pytest.raises(ConnectionClosed) as closed:
        for _ in range(2000):
            socket.send('{"type": "ping"}')
        while True:
            socket.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
    assert_healthy(server)


def open_all(server: Server, count: int, timeout: float = 10.0) -> list[ClientConnection]:
    """`count` sockets, once the server has let go of the earlier tests' ones: a socket's slot
    is released when its app returns, which can lag the client seeing it closed (a flooded
    socket's app first drains the frames the server had queued)."""
    deadline = time.monotonic() + timeout
    while True:
        sockets: list[ClientConnection] = []
        try:
            for i in range(count):
                sockets.append(open_ws(server, f"many{i}"))
            return sockets
        except InvalidStatus:
            for socket in sockets:
                socket.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_sockets_past_the_per_address_limit_are_refused(server):
    sockets = open_all(server, MAX_SOCKETS)
    try:
        with pytest.raises(InvalidStatus) as refused:
            open_ws(server, "one-too-many")
        assert refused.value.response.status_code == 403
    finally:
        for socket in sockets:
            socket.close()
    assert_healthy(server)
    assert "Traceback" not in Path(server.log).read_text()  # type: ignore[attr-defined]
