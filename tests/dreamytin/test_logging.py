"""Log lines are structured and never carry an API key."""

from __future__ import annotations

import json
import logging

from dreamytin.logging import JsonFormatter, RedactSecretsFilter


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
