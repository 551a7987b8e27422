"""Really check the services the server depends on; never call a provider.

MCP servers are listed with their state but never change the overall status: they are optional
third-party tools, chat works without them, and a 503 would make a load balancer take a worker
out of service because of someone else's server.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection

from chat.catalog import catalog_get
from chat.local_model import LOCAL_MODEL_ID, LoadState, local_engine
from tools.mcp.toolset import mcp_servers_status

logger = logging.getLogger(__name__)
CHECK_TIMEOUT_SECONDS = 3.0
Status = Literal["healthy", "degraded", "unhealthy"]


@dataclass(frozen=True, kw_only=True)
class HealthReport:
    status: Status
    services: dict[str, dict[str, Any]]


def _database_ping() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _check_database() -> None:
    await asyncio.wait_for(sync_to_async(_database_ping)(), CHECK_TIMEOUT_SECONDS)


async def _check_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    # A plain channel, not `new_channel()`'s process-local one: channels-redis receives those
    # through one shared reader per process, which a consumer on another event loop may hold.
    channel = f"health.{uuid.uuid4().hex}"
    await asyncio.wait_for(layer.send(channel, {"type": "health.ping"}), CHECK_TIMEOUT_SECONDS)
    message = await asyncio.wait_for(layer.receive(channel), CHECK_TIMEOUT_SECONDS)
    if message.get("type") != "health.ping":
        raise RuntimeError("channel layer returned a different message")


async def _service(name: str, check: object, backend: str) -> dict[str, str]:
    try:
        await check()  # type: ignore[operator]
    except Exception as exc:  # noqa: BLE001 - any failure is a failed check; the log has why
        logger.warning("health check %s failed: %r", name, exc, extra={"event": "health_failed", "service": name})
        return {"status": "down", "backend": backend, "error": type(exc).__name__}
    return {"status": "up", "backend": backend}


async def health_check() -> HealthReport:
    layer = get_channel_layer()
    database, channel_layer = await asyncio.gather(
        _service("database", _check_database, connection.vendor),
        _service("channel_layer", _check_channel_layer, type(layer).__name__ if layer else "none"),
    )
    status: Status = "healthy"
    if channel_layer["status"] != "up":
        status = "degraded"
    if database["status"] != "up":
        status = "unhealthy"
    services: dict[str, dict[str, Any]] = {"database": database, "channel_layer": channel_layer}
    if settings.MCP_SERVERS:
        services["mcp"] = _mcp_service()
    local = _local_model()
    if local is not None:
        services["local_model"] = local
        # A local model that failed to load is this server's trouble only while it is the
        # default (no hosted provider has a key); otherwise it is optional, as MCP servers are,
        # and a load balancer must not pull a worker whose hosted models answer.
        if catalog_get().usable_default() != LOCAL_MODEL_ID:
            local["optional"] = True
        elif local["status"] != "up" and status == "healthy":
            status = "degraded"
    return HealthReport(status=status, services=services)


def services_public(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What a caller who is neither authenticated nor on this machine is shown: each service's
    status, the database vendor and the channel layer's class; never MCP server names, their
    transports or error text (command paths), nor the local model's state."""
    public: dict[str, dict[str, Any]] = {}
    for name, service in services.items():
        shown = {"status": service["status"]}
        if name in ("database", "channel_layer"):
            shown["backend"] = service["backend"]
        public[name] = shown
    return public


def _mcp_service() -> dict[str, Any]:
    """`up` when every server is up, `degraded` when some are, `down` when none is and one has
    failed, else `starting`; read only, it starts nothing."""
    servers = mcp_servers_status()
    states = [server["status"] for server in servers.values()]
    if all(state == "up" for state in states):
        status = "up"
    elif "up" in states:
        status = "degraded"
    elif "down" in states:
        status = "down"
    else:
        status = "starting"
    return {"status": status, "backend": "mcp", "optional": True, "servers": servers}


def _local_model() -> dict[str, str] | None:
    """Whether the local model is loaded (never loads it: that is the first turn's or the
    warm-up's job). A model not loaded yet is up; one that failed to load is down."""
    engine = local_engine()
    if engine is None:
        return None
    failed = engine.state is LoadState.FAILED
    return {"status": "down" if failed else "up", "backend": "llama.cpp", "state": engine.state.value}
