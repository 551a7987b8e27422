"""Log lines are structured and never carry an API key."""

from __future__ import annotations

import json
import logging

from dreamytin.logging import JsonFormatter, RedactSecretsFilter, TextFormatter


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
