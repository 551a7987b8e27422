"""The provider connections' network backend: plain HTTP and TLS, ends, errors and time-outs."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chat.asyncio_network import AsyncioBackend, asyncio_network_install
from tests.servers import free_port

BODY = b"data: " + b"x" * 200_000 + b"\n\n"  # larger than one read
LARGE = b"y" * 3_000_000  # more than the backend buffers before it pauses the socket


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


async def _server(tls: ssl.SSLContext | None, behaviour: str) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if behaviour == "stall":
            await asyncio.sleep(5)
        elif behaviour == "cut":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npartial")
            await writer.drain()
        else:
            body = LARGE if behaviour == "large" else BODY
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
        writer.close()

    port = free_port()
    return await asyncio.start_server(handle, "127.0.0.1", port, ssl=tls), port


@pytest.fixture
async def plain() -> AsyncIterator[httpx.AsyncClient]:
    async with asyncio_network_install(httpx.AsyncClient(timeout=0.5)) as client:
        yield client


def test_it_is_installed_under_the_client_pool():
    client = asyncio_network_install(httpx.AsyncClient())
    assert isinstance(client._transport._pool._network_backend, AsyncioBackend)


async def test_a_body_larger_than_one_read_arrives_whole(plain):
    server, port = await _server(None, "ok")
    async with server:
        for _ in range(2):  # the second request reuses the idle connection
            response = await plain.get(f"http://127.0.0.1:{port}/")
            assert response.status_code == 200 and response.content == BODY


async def _read_slowly(client: httpx.AsyncClient, url: str) -> bytes:
    """Read a body slower than it arrives, so the backend pauses the socket and resumes it."""
    received = bytearray()
    async with client.stream("GET", url) as response:
        async for chunk in response.aiter_raw():
            received += chunk
            await asyncio.sleep(0.001)
    return bytes(received)


async def test_a_large_body_read_slowly_arrives_whole(plain):
    server, port = await _server(None, "large")
    async with server:
        assert await _read_slowly(plain, f"http://127.0.0.1:{port}/") == LARGE


async def test_tls(tmp_path):
    cert_file, key_file = _certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)
    server, port = await _server(server_tls, "ok")
    async with server:
        trusting = ssl.create_default_context(cafile=str(cert_file))
        async with asyncio_network_install(httpx.AsyncClient(verify=trusting)) as client:
            async with client.stream("GET", f"https://127.0.0.1:{port}/") as response:
                assert response.extensions["network_stream"].get_extra_info("ssl_object") is not None
                assert await response.aread() == BODY
    server, port = await _server(server_tls, "large")
    async with server:
        async with asyncio_network_install(httpx.AsyncClient(verify=trusting, timeout=5)) as client:
            assert await _read_slowly(client, f"https://127.0.0.1:{port}/") == LARGE
        async with asyncio_network_install(httpx.AsyncClient()) as client:  # the system's trust store
            with pytest.raises(httpx.ConnectError):
                await client.get(f"https://127.0.0.1:{port}/")


async def test_a_stalled_server_times_out(plain):
    server, port = await _server(None, "stall")
    async with server:
        with pytest.raises(httpx.ReadTimeout):
            await plain.get(f"http://127.0.0.1:{port}/")


async def test_a_cut_body_and_a_refused_connection_are_errors(plain):
    server, port = await _server(None, "cut")
    async with server:
        with pytest.raises(httpx.RemoteProtocolError):
            await plain.get(f"http://127.0.0.1:{port}/")
    with pytest.raises(httpx.ConnectError):
        await plain.get(f"http://127.0.0.1:{free_port()}/")
