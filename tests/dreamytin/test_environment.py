"""A serving process holds no secret in its environment: a stdio MCP server (a child of the same
user) could read `/proc/<worker>/environ`, which shows the block the process started with."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest

from tests.servers import Server

KEY = "sk-environ-test-0123456789abcdef"
TOKEN = "environ-test-token-0123456789-abcdefghijkl"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])
def test_a_serving_process_keeps_no_secret_in_its_environment(kind, tmp_path: Path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "OPENAI_API_KEY": KEY,
        "AUTH_MODE": "token",
        "AUTH_TOKEN": TOKEN,
        "LOG_LEVEL": "WARNING",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("REDIS_URL", None)  # nothing here needs it, and no other test's counters then count
    server = Server(kind, env, tmp_path / "server.log")
    try:
        # The settings still hold them: the token still admits, the catalog still has a key.
        assert httpx.get(f"{server.url}/models", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        environ = Path(f"/proc/{server.process.pid}/environ").read_bytes()
    finally:
        server.stop()
    assert KEY.encode() not in environ and TOKEN.encode() not in environ
    # By name: the runner's own `CI_DATABASE_URL` ends in `DATABASE_URL=` too.
    names = {entry.partition(b"=")[0] for entry in environ.split(b"\0") if entry}
    assert b"OPENAI_API_KEY" not in names and b"DATABASE_URL" not in names
    assert b"PATH" in names  # the rest of the environment is left alone
