"""The real server as a separate process (daphne or uvicorn), for the end-to-end test and the
benchmark."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg

PROJECT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


_templates_lock = threading.Lock()
_templates: dict[bool, str] = {}


def _suite_postgres() -> tuple[str, str] | None:
    """(server URL without the database, the suite's database name) when the suite runs on
    PostgreSQL."""
    configured = os.environ.get("DATABASE_URL", "")
    if not configured.startswith("postgres"):
        return None
    base, _, suite_db = configured.rpartition("/")
    return base, suite_db


def _postgres_create(base: str, suite_db: str, name: str, template: str | None = None) -> str:
    """A fresh PostgreSQL database named after the suite's own (two suites on one server never
    share it)."""
    database = f"{suite_db}_{name}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        copied = f' TEMPLATE "{template}"' if template else ""
        connection.execute(f'CREATE DATABASE "{database}"{copied}')
    return f"{base}/{database}"


def _template(postgres: tuple[str, str] | None) -> str:
    """A database migrated once per run, that the servers' own are copied from: a `manage.py
    migrate` costs seconds (Django's start-up and every migration), a copy milliseconds."""
    kind = postgres is not None
    with _templates_lock:
        if kind in _templates:
            return _templates[kind]
        if postgres is None:
            folder = Path(tempfile.mkdtemp(prefix="dreamytin-template-"))
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            url = f"sqlite:///{folder / 'template.sqlite3'}"
        else:
            url = _postgres_create(*postgres, "template")
        env = {**os.environ, "DATABASE_URL": url}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=PROJECT, env=env, check=True)
        _templates[kind] = url
        return url


def database_migrated(folder: Path, name: str) -> str:
    """A migrated database of a server's own: a fresh SQLite file in `folder`, or a fresh
    PostgreSQL database when the suite runs on PostgreSQL."""
    postgres = _suite_postgres()
    template = _template(postgres)
    if postgres is not None:
        return _postgres_create(*postgres, name, template=template.rpartition("/")[2])
    path = folder / f"{name}.sqlite3"
    source, target = sqlite3.connect(template.removeprefix("sqlite:///")), sqlite3.connect(path)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return f"sqlite:///{path}"


# The servers the README names: the development server (Daphne's runserver), and daphne and
# uvicorn (on uvloop) in production. The development server runs on the embedded defaults only:
# it is Daphne's server started by another command, which the PostgreSQL + Redis pass runs as
# `daphne`, and a developer's `runserver` has no DATABASE_URL (about a minute of that pass).
SERVERS = ("daphne", "uvicorn") if _suite_postgres() is not None else ("runserver", "daphne", "uvicorn")


def server_command(kind: str, port: int) -> list[str]:
    """`runserver`, `daphne`, `uvicorn`, or `uvicorn:N` for N worker processes."""
    if kind == "runserver":
        return [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
    if kind == "daphne":
        # 1 MiB is Daphne 4.2's default too; spelled out, as the documented command does.
        return [
            sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
            "--websocket-max-message-size", "1048576", "dreamytin.asgi:application",
        ]  # fmt: skip
    name, _, workers = kind.partition(":")
    if name != "uvicorn":
        raise ValueError(f"unknown server {kind!r}")
    return [
        sys.executable, "-m", "uvicorn", "dreamytin.asgi:application", "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning", "--ws-max-size", "1048576", "--ws-per-message-deflate", "false",
        "--workers", workers or "1",
    ]  # fmt: skip


class Server:
    """A server process, started, healthy (`/health` answered 200) and warmed up when
    constructed. `cold_start` is the time to the first 200, `warm` to the warm-up's end.

    `start_timeout` is generous: CI runs the suite's two database passes side by side, and a cold
    start on two busy cores can take past a minute. `wrapper` runs the server under another
    program (the benchmark's valgrind), which may need longer still."""

    def __init__(
        self,
        kind: str,
        env: dict[str, str],
        log: Path,
        checkout: Path = PROJECT,
        *,
        wrapper: Sequence[str] = (),
        start_timeout: float = 180.0,
    ) -> None:
        self.port = free_port()
        self.log = log
        self.env = env
        started = time.perf_counter()
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                [*wrapper, *server_command(kind, self.port)],
                cwd=checkout,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self.cold_start = 0.0
        while time.perf_counter() < started + start_timeout and self.process.poll() is None:
            try:
                health = httpx.get(f"{self.url}/health", timeout=1)
            except httpx.HTTPError:
                time.sleep(0.02)
                continue
            if health.status_code == 200:
                self.cold_start = self.cold_start or time.perf_counter() - started
                self.warmup = health.json()["warmup"]
                if self.warmup in ("done", "failed"):
                    self.warm = time.perf_counter() - started
                    return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{kind} did not become healthy:\n{log.read_text()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, as a process manager stops it. With no turn running it exits in well under a
        second on a quiet machine; the timeout allows for two busy cores. A server that outlasts
        it is killed and the failure shows the end of its log (what it was doing)."""
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            tail = self.log.read_text(errors="replace")[-4000:]
            raise AssertionError(f"the server outlasted {timeout} s after SIGTERM; its log ends:\n{tail}") from None


def servers_start(starters: Sequence[Callable[[], Server]]) -> list[Server]:
    """Servers started side by side, all or none: when one fails, the started ones are stopped
    and its failure raised."""
    with ThreadPoolExecutor(len(starters)) as pool:
        starting = [pool.submit(start) for start in starters]
    failures = [failure for future in starting if (failure := future.exception()) is not None]
    if failures:
        for future in starting:
            if future.exception() is None:
                future.result().stop()
        raise failures[0]
    return [future.result() for future in starting]
