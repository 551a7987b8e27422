"""Shared fixtures: the fake provider, a catalog that points at it, a workspace, a socket."""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.contrib.contenttypes.management import create_contenttypes
from django.contrib.contenttypes.models import ContentType
from django.db import connections
from django.db.backends.postgresql.operations import DatabaseOperations as PostgresOperations
from django.db.models.signals import post_migrate
from django.test import override_settings

from chat.titles import titles_settle
from chat.turn import turns_cancel_all
from chat.warmup import warmup
from dreamytin.asgi import application
from tests.fake_provider import FakeProvider

# The suite's own process on PostgreSQL: dozens of turns run at once in some tests (the budget's
# race), each holding a pooled connection in its thread for a while; a server's 10 would make
# the next test wait for one. Set before the first connection makes the pool.
_pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
if isinstance(_pool, dict):
    _pool["max_size"] = max(_pool.get("max_size", 0), 50)


@pytest.fixture(scope="session", autouse=True)
async def _close_async_orm_connection(django_db_setup: None, django_db_blocker: Any) -> AsyncIterator[None]:
    """Django's async ORM (`aget`, `acount` in tests) runs on asgiref's one shared thread, whose
    connection, like PostgreSQL's pool, would otherwise still be open when the test database is
    dropped."""
    yield
    with django_db_blocker.unblock():
        await sync_to_async(connections.close_all)()
        for connection in connections.all():
            if getattr(connection, "pool", None) is not None:
                connection.close_pool()


@pytest.fixture(scope="session", autouse=True)
def _quick_flush(django_db_setup: None) -> Iterator[None]:
    """A transactional test ends by emptying every table (Django's flush), which took most of
    the PostgreSQL pass's teardowns, half a second each on busy cores:
    - PostgreSQL's TRUNCATE makes every table's files anew and syncs them; DELETE of the few rows
      a test wrote does not. Its foreign keys are all deferred (Django makes them so), so the
      order of the tables does not matter in the flush's transaction.
    - Then Django sends `post_migrate`, which writes every content type and permission again. No
      test reads permissions; content types are made on first use (`get_for_model`) once the cache
      of the ones the flush deleted is cleared."""
    truncate = PostgresOperations.sql_flush
    PostgresOperations.sql_flush = _sql_delete  # type: ignore[method-assign]
    permissions_uid = "django.contrib.auth.management.create_permissions"
    post_migrate.disconnect(create_permissions, dispatch_uid=permissions_uid)
    post_migrate.disconnect(create_contenttypes)
    post_migrate.connect(_content_types_forgotten)
    yield
    post_migrate.disconnect(_content_types_forgotten)
    post_migrate.connect(create_contenttypes)
    post_migrate.connect(create_permissions, dispatch_uid=permissions_uid)
    PostgresOperations.sql_flush = truncate  # type: ignore[method-assign]


def _sql_delete(
    ops: PostgresOperations, style: Any, tables: list[str], *, reset_sequences: bool = False, **_: Any
) -> list[str]:
    assert not reset_sequences, "a test that needs its sequences reset needs TRUNCATE"
    return [f"DELETE FROM {ops.quote_name(table)};" for table in tables]  # noqa: S608 - Django's own table names


def _content_types_forgotten(**_: Any) -> None:
    ContentType.objects.clear_cache()


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing() -> Iterator[None]:
    """Django's PBKDF2 takes most of a second on a slow core, for every user a test makes and
    every login it checks; what the tests check is who may do what, not the hash."""
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(scope="session", autouse=True)
def _warmed_up() -> None:
    """The app's first call starts the warm-up in the background; here it runs once, up front,
    so it never changes the collector in the middle of a test. Without the local model, whose
    own warm-up would otherwise run on through the first tests (the tests that use it turn it
    on)."""
    with override_settings(LOCAL_MODEL=False):
        warmup()


@pytest.fixture(scope="session", autouse=True)
def _remove_sqlite_side_files() -> Iterator[None]:
    """pytest-django deletes the file test database, not its WAL side files."""
    yield
    name = settings.DATABASES["default"].get("TEST", {}).get("NAME")
    for suffix in ("-wal", "-shm"):
        if name:
            Path(f"{name}{suffix}").unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def _local_model_only_when_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    """The bundled local model is installed, and so in the catalog of every test by default:
    only tests marked `local_model` see it, the others keep the catalogs they write."""
    if request.node.get_closest_marker("local_model"):
        yield
        return
    with override_settings(LOCAL_MODEL=False):
        yield


@pytest.fixture(autouse=True)
async def _no_turn_outlives_its_test() -> AsyncIterator[None]:
    """A turn outlives its socket (for TURN_DETACH_GRACE), and a title is made after the turn
    (chat.titles): not after their test."""
    yield
    await turns_cancel_all()
    await titles_settle(0)


@pytest.fixture(autouse=True)
def _failed_credentials_not_counted() -> Iterator[None]:
    """Tests send bad tokens from 127.0.0.1 on purpose; counted (in Redis, across runs too), they
    would lock the next tests out. tests/accounts/test_guessing.py turns the limit on."""
    with override_settings(RATE_LIMIT_LOGIN_FAILURES=None):
        yield


@pytest.fixture(autouse=True)
def _a_channel_layer_per_test() -> Iterator[None]:
    """A socket a test leaves open keeps receiving on the channel layer (revocations) on that
    test's event loop; channels-redis refuses a second loop on the same layer object."""
    yield
    channel_layers.backends.clear()


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeProvider]:
    server = FakeProvider().start()
    yield server
    server.stop()


@pytest.fixture
async def fake(fake_server: FakeProvider) -> AsyncIterator[FakeProvider]:
    fake_server.reset()
    yield fake_server
    await turns_cancel_all()  # before the reset: a turn left running must not reach the next test
    fake_server.reset()


def catalog_file(tmp_path: Path, models: dict[str, Any], default: str) -> Path:
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"defaultModel": default, "models": models}))
    return path


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    return root


@pytest.fixture
def provider(fake: FakeProvider, tmp_path: Path, workspace: Path) -> Iterator[FakeProvider]:
    """Every provider route pointed at the fake provider, with keys, and a workspace."""
    models = {
        "gpt-4o": {"provider": "openai", "name": "GPT-4o", "maxTokens": 128000},
        "gpt-4o-mini": {"provider": "openai", "name": "GPT-4o mini", "maxTokens": 128000},
        "claude-sonnet-4-5": {"provider": "anthropic", "name": "Claude Sonnet 4.5", "maxTokens": 200000},
        "gemini-2.5-flash": {"provider": "google", "name": "Gemini 2.5 Flash", "maxTokens": 1048576},
        "local-llama": {
            "provider": "openai_compatible",
            "name": "Local",
            "maxTokens": 8192,
            "base_url": f"{fake.url}/v1",
            "supportsTools": True,
        },
    }
    with override_settings(
        MODELS_FILE=catalog_file(tmp_path, models, "gpt-4o"),
        OPENAI_API_KEY="sk-test-openai-key",
        ANTHROPIC_API_KEY="sk-ant-test-key",
        GOOGLE_API_KEY="AIza-test-google-key",
        OPENAI_BASE_URL=f"{fake.url}/v1",
        ANTHROPIC_BASE_URL=fake.url,
        GEMINI_BASE_URL=fake.url,
        TOOLS_ALLOWED_DIRS=[str(workspace)],
        PROVIDER_RETRIES=0,
    ):
        yield fake


class Client:
    """A WebSocket client of the app, with helpers that read a whole turn."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator

    async def send(self, payload: Any) -> None:
        await self.communicator.send_json_to(payload)

    async def receive(self, timeout: float = 10) -> dict[str, Any]:
        return await self.communicator.receive_json_from(timeout=timeout)

    async def turn(self, message: str, model: str | None = None, timeout: float = 20) -> list[dict[str, Any]]:
        frame: dict[str, Any] = {"message": message}
        if model:
            frame["model"] = model
        await self.send(frame)
        return await self.until_end(timeout=timeout)

    async def until_end(self, timeout: float = 20) -> list[dict[str, Any]]:
        events = []
        while True:
            event = await self.receive(timeout=timeout)
            events.append(event)
            if event["type"] == "stream_end":
                return events


async def connect(
    conversation_id: str = "conv1", headers: list[tuple[bytes, bytes]] | None = None, *, protocol: int = 1
) -> Client:
    """A socket on the conversation; with `protocol=2` it says `hello` and is sent every turn."""
    communicator = WebsocketCommunicator(application, f"/ws/{conversation_id}", headers=headers or [])
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    client = Client(communicator)
    greeting = await client.receive()
    assert greeting["type"] == "connected"
    if protocol >= 2:
        await client.send({"type": "hello", "protocol": protocol})
        assert (await client.receive())["protocol"] == 2
    return client


BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"
ORIGIN = "http://localhost:1420"


async def page_socket(conversation_id: str, *, user_agent: str = BROWSER) -> Client:
    """A socket of a browser page at 127.0.0.1, as the existing frontend opens it (v1)."""
    headers = [(b"origin", ORIGIN.encode()), (b"user-agent", user_agent.encode())]
    communicator = WebsocketCommunicator(application, f"/ws/{conversation_id}", headers=headers)
    communicator.scope["client"] = ("127.0.0.1", 50000)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    client = Client(communicator)
    assert (await client.receive())["type"] == "connected"
    return client


async def page_get(async_client: Any, conversation_id: str) -> dict[str, Any]:
    response = await async_client.get(
        f"/conversations/{conversation_id}", headers={"Origin": ORIGIN, "User-Agent": BROWSER}
    )
    return response.json()


@pytest.fixture
async def ws(provider: FakeProvider) -> AsyncIterator[Client]:
    socket = await connect()
    yield socket
    await socket.communicator.disconnect()


@pytest.fixture
def collector_restored() -> Iterator[None]:
    """The garbage collector's settings as they were (tests of `chat.gc_tuning` change them)."""
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    yield
    gc.unfreeze()
    if frozen:
        gc.freeze()
    gc.set_threshold(*threshold)
