"""MCP servers in the real server processes: started with the process (uvicorn's lifespan,
Daphne's reactor), closed when it stops, and killed with the worker when it is killed."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import catalog_file
from tests.fake_provider import FakeProvider, text, tools
from tests.servers import Server, database_migrated
from tests.test_end_to_end import chat_turn
from tests.tools.mcp.conftest import SERVER_SCRIPT


@pytest.fixture(scope="module")
def base_env(fake_server: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("mcp-e2e")
    models = {"gpt-4o": {"provider": "openai", "name": "GPT-4o", "maxTokens": 128000}}
    env = {
        **os.environ,
        "DATABASE_URL": database_migrated(folder, "mcp_e2e"),
        "OPENAI_API_KEY": "sk-e2e-test-key",
        "OPENAI_BASE_URL": f"{fake_server.url}/v1",
        "MODELS_FILE": str(catalog_file(folder, models, "gpt-4o")),
        "PROVIDER_RETRIES": "0",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


@pytest.fixture
def mcp_env(base_env: dict[str, str], fake_server: FakeProvider, tmp_path: Path) -> Iterator[dict[str, str]]:
    fake_server.reset()
    yield {**base_env, "MCP_SERVERS_FILE": str(servers_file(tmp_path, {"EXIT_FILE": str(tmp_path / "exit")}))}
    fake_server.reset()


def servers_file(folder: Path, env: dict[str, str]) -> Path:
    entry = {"command": sys.executable, "args": [str(SERVER_SCRIPT)], "env": env}
    path = folder / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"test": entry}}))
    return path


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited: only its parent has not reaped it yet


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def mcp_status(server: Server) -> dict:
    return httpx.get(f"{server.url}/health", timeout=5).json()["services"]["mcp"]["servers"]["test"]


def server_pid(server: Server, fake_server, conversation_id: str) -> int:
    fake_server.script(tools(("server_pid", {})), text("Got it."))
    events = chat_turn(server, conversation_id, "pid?")
    return int(next(e["result"] for e in events if e["type"] == "tool_result"))


@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])
def test_started_with_the_process_and_closed_when_it_stops(kind, mcp_env, fake_server, tmp_path):
    server = Server(kind, mcp_env, tmp_path / f"{kind}.log")
    try:
        # Started at process start, not by a turn: /health starts nothing.
        assert wait_until(lambda: mcp_status(server)["status"] == "up", 30), mcp_status(server)
        pid = server_pid(server, fake_server, f"life{kind}")
        assert alive(pid)
    finally:
        server.stop()
    assert wait_until(lambda: not alive(pid), 5)
    # It saw its session closed (stdin) and exited on its own: not killed with the process.
    assert (tmp_path / "exit").read_text() == str(pid)


def test_a_killed_worker_takes_its_stdio_servers_with_it(mcp_env, fake_server, tmp_path):
    # A server that outlives its stdin: only the kernel's PR_SET_PDEATHSIG can end it.
    env = {**mcp_env, "MCP_SERVERS_FILE": str(servers_file(tmp_path, {"LINGER": "1"}))}
    server = Server("uvicorn", env, tmp_path / "uvicorn.log")
    pid = None
    try:
        pid = server_pid(server, fake_server, "lifekill")
        worker = parent_of(parent_of(pid))  # the server's parent is its launcher
        os.kill(worker, signal.SIGKILL)  # no shutdown, no lifespan: only the kernel can clean up
        assert wait_until(lambda: not alive(pid), 5)
    finally:
        server.process.kill()
        server.process.wait(10)
        if pid is not None and alive(pid):  # the feature failed: do not leave it running
            os.kill(pid, signal.SIGKILL)
