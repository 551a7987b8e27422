"""MCP_SERVERS_FILE: the common mcpServers shape is read as it is; a bad file is a start-up error
that names the variable; a server that cannot start is not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from dreamytin.config import config_from_env
from tools.mcp.config import HttpEntry, StdioEntry
from tools.mcp.connection import stdio_environment


def servers_file(tmp_path: Path, body: object) -> Path:
    path = tmp_path / "mcp.json"
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return path


def test_stdio_and_http_entries_with_variables_and_other_clients_keys(tmp_path):
    path = servers_file(
        tmp_path,
        {
            "mcpServers": {
                "files": {"command": "npx", "args": ["-y", "server-files", "/srv"], "env": {"LEVEL": "debug"}},
                "github": {
                    "type": "http",
                    "url": "https://mcp.example.com/mcp",
                    "headers": {"Authorization": "Bearer ${GITHUB_TOKEN}"},
                    "autoApprove": [],
                },
                "old": {"command": "old-server", "disabled": True},
            }
        },
    )
    config = config_from_env({"MCP_SERVERS_FILE": str(path), "GITHUB_TOKEN": "ghp-1"}, base_dir=tmp_path)
    assert config.mcp_servers == {
        "files": StdioEntry(command="npx", args=("-y", "server-files", "/srv"), env={"LEVEL": "debug"}),
        "github": HttpEntry(url="https://mcp.example.com/mcp", headers={"Authorization": "Bearer ghp-1"}),
    }
    assert config.mcp_timeout == 30 and config.mcp_start_timeout == 60


def test_unset_means_no_servers():
    assert config_from_env({}).mcp_servers == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "not valid JSON"),
        ({"servers": {}}, "must be an object"),
        ({"mcpServers": {"a b": {"command": "x"}}}, "server name 'a b'"),
        ({"mcpServers": {"x": {"args": []}}}, "server 'x': command: Field required"),
        ({"mcpServers": {"x": {"url": "ftp://host"}}}, "server 'x': url"),
        ({"mcpServers": {"x": {"command": "run", "env": {"K": "${UNSET_VARIABLE_X}"}}}}, "UNSET_VARIABLE_X"),
    ],
)
def test_a_bad_file_is_a_start_up_error_naming_the_variable(tmp_path, body, message):
    path = servers_file(tmp_path, body)
    with pytest.raises(ImproperlyConfigured, match=f"MCP_SERVERS_FILE: .*{message}"):
        config_from_env({"MCP_SERVERS_FILE": str(path)}, base_dir=tmp_path)


def test_a_missing_file_and_a_bad_timeout(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="MCP_SERVERS_FILE: cannot read"):
        config_from_env({"MCP_SERVERS_FILE": "nope.json"}, base_dir=tmp_path)
    with pytest.raises(ImproperlyConfigured, match="MCP_TIMEOUT must be a positive"):
        config_from_env({"MCP_TIMEOUT": "0"}, base_dir=tmp_path)


def test_a_stdio_server_gets_its_entry_env_and_a_minimum_never_the_backend_keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-backend")
    monkeypatch.setenv("DATABASE_URL", "postgres://secret@db/x")
    env = stdio_environment(StdioEntry(command="x", env={"TOKEN": "t"}))
    assert env["TOKEN"] == "t" and "PATH" in env
    assert set(env) <= {"TOKEN", "HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER"}
