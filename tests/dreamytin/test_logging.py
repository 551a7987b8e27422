"""Log lines are structured and never carry an API key."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

import httpx

from dreamytin.logging import JsonFormatter, RedactSecretsFilter, TextFormatter
from tests.servers import PROJECT, free_port


def test_keys_are_redacted_and_lines_are_json(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "my-very-own-openai-key")
    record = logging.makeLogRecord(
        {
            "name": "chat",
            "levelname": "INFO",
            "msg": "calling with %s and %s",
            "args": ("my-very-own-openai-key", "sk-ant-api03-abcdefghijkl"),
        }
    )
    record.conversation_id = "c1"
    assert RedactSecretsFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "calling with [redacted] and [redacted]"
    assert line["conversation_id"] == "c1" and line["level"] == "INFO"


def test_a_request_logs_one_line(client, caplog):
    with caplog.at_level(logging.INFO, logger="dreamytin.request"):
        client.get("/")
    lines = [r for r in caplog.records if r.name == "dreamytin.request"]
    assert len(lines) == 1
    assert (lines[0].method, lines[0].path, lines[0].status) == ("GET", "/", 200)


def test_the_text_format_redacts_keys_in_tracebacks_too():
    try:
        raise RuntimeError("provider said: invalid key sk-proj-abcdefghijklmnop")
    except RuntimeError as exc:
        record = logging.makeLogRecord(
            {"name": "chat", "levelname": "ERROR", "msg": "failed", "exc_info": (type(exc), exc, exc.__traceback__)}
        )
    assert RedactSecretsFilter().filter(record)
    line = TextFormatter("%(levelname)s %(message)s").format(record)
    assert "RuntimeError" in line and "sk-proj" not in line and "[redacted]" in line


def test_a_bad_host_header_logs_one_line_not_a_traceback(client, caplog):
    with caplog.at_level(logging.INFO):
        response = client.get("/models", HTTP_HOST="attacker.example")
    assert response.status_code == 400
    refused = [r for r in caplog.records if r.name == "django.security.DisallowedHost"]
    assert len(refused) == 1 and "attacker.example" in refused[0].getMessage()
    assert not any(r.exc_info or r.exc_text for r in caplog.records), "a traceback was logged"


def test_uvicorns_access_log_goes_through_the_redaction(tmp_path):
    """uvicorn logs each request's query string as sent, with handlers of its own outside
    Django's LOGGING: a key in a URL must not reach its log."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "LOG_LEVEL": "INFO"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log = tmp_path / "uvicorn.log"
    command = [sys.executable, "-m", "uvicorn", "dreamytin.asgi:application", "--port", str(port)]
    command += ["--log-level", "info"]
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=PROJECT, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health?key=sk-proj-abcdefghijklmnop0123", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        time.sleep(0.3)
    finally:
        process.terminate()
        process.wait(timeout=20)
    written = log.read_text()
    assert "/health?key=" in written, written  # the access line is there ...
    assert "sk-proj-abcdefghijklmnop0123" not in written  # ... without the key
