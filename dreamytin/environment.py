"""Take the secrets out of the serving process's environment once the settings hold them.

A process of the same user can read another's start-up environment from `/proc/<pid>/environ`;
a stdio MCP server is such a process (a child of the worker). Unsetting a variable is not
enough for that file: it shows the environment block as the process was started with it, not
`os.environ`. So each secret is unset, and then its `NAME=value` bytes in that block are
overwritten with NUL (as `setproctitle` rewrites the argument block). The settings already
hold the values, and every client is handed its key explicitly (chat/providers.py); the Agents
SDK's trace exporter, which reads OPENAI_API_KEY from the environment, is given it too.

Done when the server starts serving (uvicorn's lifespan, Daphne's reactor), and before any
stdio MCP server starts, in the serving process only: `runserver`'s reloader parent keeps them,
so the child it restarts reads them again.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

from django.conf import settings

logger = logging.getLogger(__name__)
SECRET_VARIABLES = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "AUTH_TOKEN",
    "SECRET_KEY",
    "DATABASE_URL",  # may hold a password
    "REDIS_URL",  # may hold a password
)
# /proc/<pid>/stat fields (1-based) bounding the environment block (proc(5)).
_ENV_START_FIELD, _ENV_END_FIELD = 50, 51


def environ_scrub() -> list[str]:
    """Unset the secret variables and blank them in the start-up block; the names blanked."""
    present = [name for name in SECRET_VARIABLES if name in os.environ]
    if not present:
        return []
    if settings.AGENTS_TRACING and settings.OPENAI_API_KEY:
        from agents import set_tracing_export_api_key

        set_tracing_export_api_key(settings.OPENAI_API_KEY)
    for name in present:
        os.environ.pop(name)
    if sys.platform.startswith("linux"):
        try:
            _blank_startup_block(present)
        except (OSError, ValueError) as exc:  # the process goes on; the docs say what is isolated
            logger.warning("could not blank the start-up environment: %r", exc, extra={"event": "environ_scrub"})
    return present


def _blank_startup_block(names: list[str]) -> None:
    with open("/proc/self/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()  # after `comm`, which may hold spaces
    start, end = int(fields[_ENV_START_FIELD - 3]), int(fields[_ENV_END_FIELD - 3])
    block = ctypes.string_at(start, end - start)
    prefixes = tuple(f"{name}=".encode() for name in names)
    offset = 0
    for entry in block.split(b"\0"):
        if entry.startswith(prefixes):
            ctypes.memset(start + offset, 0, len(entry))
        offset += len(entry) + 1
