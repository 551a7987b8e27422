"""An httpcore network backend on plain asyncio, for the provider connections of the OpenAI route.

httpcore's default backend goes through anyio. Each read of a streamed reply there costs a
cancel scope with a timer, and the socket's reader is resumed and paused again, which is two
`epoll_ctl` calls plus the selector's bookkeeping. At one read per token, that was the largest
cost left in the HTTP client. This backend reads with an asyncio protocol that keeps its
buffer. A read that has to wait arms one timer for its timeout. It pauses the socket only when
a megabyte is waiting unread.

Errors are httpcore's own (`ReadError`, `ConnectTimeout`...), so httpx and the OpenAI client
map them as they always do.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Coroutine, Iterable
from typing import Any

import httpcore
import httpx

PAUSE_ABOVE_BYTES = 1024 * 1024
# httpcore's names for connection facts → asyncio's.
_TRANSPORT_INFO = {"ssl_object": "ssl_object", "client_addr": "sockname", "server_addr": "peername", "socket": "socket"}
SocketOption = tuple[int, int, int | bytes] | tuple[int, int, None, int]


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: Exception | None = None
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.drained: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > PAUSE_ABOVE_BYTES and self.transport is not None:
            self.transport.pause_reading()
            self.paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def pause_writing(self) -> None:
        self.drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        self.drained = None

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


def _time_out(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        if not protocol.buffer and not protocol.eof:
            loop = asyncio.get_running_loop()
            protocol.waiter = waiter = loop.create_future()
            timer = loop.call_later(timeout, _time_out, waiter) if timeout is not None else None
            try:
                await waiter
            except TimeoutError as exc:
                raise httpcore.ReadTimeout("timed out reading from the provider") from exc
            finally:
                protocol.waiter = None
                if timer is not None:
                    timer.cancel()
        if protocol.buffer:
            data = bytes(protocol.buffer[:max_bytes])
            del protocol.buffer[:max_bytes]
            if protocol.paused and len(protocol.buffer) < PAUSE_ABOVE_BYTES:
                protocol.paused = False
                self._transport.resume_reading()
            return data
        if protocol.error is not None:
            raise httpcore.ReadError(str(protocol.error)) from protocol.error
        return b""  # end of stream

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._transport.is_closing():
            raise httpcore.WriteError("the connection to the provider is closed")
        self._transport.write(buffer)
        drained = self._protocol.drained
        if drained is not None:
            try:
                await asyncio.wait_for(asyncio.shield(drained), timeout)
            except TimeoutError as exc:
                raise httpcore.WriteTimeout("timed out writing to the provider") from exc

    async def aclose(self) -> None:
        # Cut at once: a TLS transport's close() first waits (up to 30 s) for the provider's
        # close_notify while it goes on streaming, and billing, a reply nobody reads.
        self._transport.abort()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(
                self._transport,
                self._protocol,
                ssl_context,
                server_hostname=server_hostname,
                ssl_handshake_timeout=timeout,
            )
        except TimeoutError as exc:
            self._transport.close()
            raise httpcore.ConnectTimeout("timed out in the TLS handshake") from exc
        except (OSError, ssl.SSLError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(str(exc)) from exc
        if transport is None:
            raise httpcore.ConnectError("the TLS handshake did not complete")
        self._protocol.transport = transport  # flow control pauses and resumes the TLS transport
        return AsyncioStream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # httpcore asks before reusing an idle connection: one with data or an end waiting
            # was closed or broken by the server.
            return self._protocol.eof or bool(self._protocol.buffer)
        if info not in _TRANSPORT_INFO:
            return None
        try:
            return self._transport.get_extra_info(_TRANSPORT_INFO[info])
        except AttributeError:  # asyncio's TLS transport, once closed, has nothing left to tell
            return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        local = (local_address, 0) if local_address else None
        connecting = asyncio.get_running_loop().create_connection(_Protocol, host, port, local_addr=local)
        return await _connect(connecting, f"{host}:{port}", timeout, socket_options)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[SocketOption] | None = None
    ) -> httpcore.AsyncNetworkStream:
        connecting = asyncio.get_running_loop().create_unix_connection(_Protocol, path)
        return await _connect(connecting, path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def _connect(
    connecting: Coroutine[Any, Any, tuple[asyncio.Transport, _Protocol]],
    where: str,
    timeout: float | None,
    options: Iterable[SocketOption] | None,
) -> AsyncioStream:
    try:
        async with asyncio.timeout(timeout):
            transport, protocol = await connecting
    except TimeoutError as exc:
        raise httpcore.ConnectTimeout(f"timed out connecting to {where}") from exc
    except OSError as exc:
        raise httpcore.ConnectError(str(exc)) from exc
    sock: socket.socket | None = transport.get_extra_info("socket")
    for option in options or ():
        if sock is not None:
            sock.setsockopt(*option)  # type: ignore[arg-type]
    return AsyncioStream(transport, protocol)


def asyncio_network_install(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """Put this backend under every connection pool of an httpx client: its own transport and
    the proxy transports it mounted from the environment. (httpx builds its pools without a way
    to choose their backend, so this sets the pools' attribute.)"""
    for transport in (client._transport, *client._mounts.values()):
        pool = getattr(transport, "_pool", None)
        if pool is not None:
            pool._network_backend = AsyncioBackend()
    return client
