"""Open a socket to the app as a given client: address, headers, subprotocols."""

from __future__ import annotations

import itertools
import uuid

from channels.testing import WebsocketCommunicator

from dreamytin.asgi import application

_ports = itertools.count(40000)


def unique_loopback() -> str:
    """A loopback address no other test (or earlier run, in Redis) counted against."""
    value = uuid.uuid4().int
    return f"127.{value % 250 + 1}.{value // 250 % 250 + 1}.{value // 62500 % 250 + 1}"


async def open_socket(
    path: str = "/ws/acct1",
    *,
    address: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    subprotocols: list[str] | None = None,
) -> tuple[bool, int | None, WebsocketCommunicator]:
    """(accepted, close code or accepted subprotocol, communicator). By default from a loopback
    address of its own: a socket a test leaves open (a refused one whose app still waits for the
    disconnect) must not count against another test's address, in Redis either."""
    communicator = WebsocketCommunicator(application, path, headers=headers, subprotocols=subprotocols)
    communicator.scope["client"] = (address or unique_loopback(), next(_ports))
    accepted, detail = await communicator.connect(timeout=5)
    return accepted, detail, communicator
