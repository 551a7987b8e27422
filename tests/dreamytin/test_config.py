"""Settings come from the environment; bad values are clear start-up errors."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from dreamytin.config import DEV_SECRET_KEY, Rate, config_from_env

BASE = Path("/srv/app")


def test_defaults_are_a_development_server_on_sqlite():
    config = config_from_env({}, base_dir=BASE)
    assert config.debug is True
    assert config.secret_key == DEV_SECRET_KEY
    assert config.database["ENGINE"] == "django.db.backends.sqlite3"
    assert config.database["NAME"] == "/srv/app/db.sqlite3"
    assert config.redis_url is None
    assert config.cors_allowed_origins == ["http://localhost:1420", "http://127.0.0.1:1420", "tauri://localhost"]
    assert config.models_file == BASE / "chat" / "models.json"
    assert config.tools_allowed_dirs == ["/srv/app/workspace"]
    assert (config.chat_max_message_chars, config.agent_max_turns, config.tools_max_entries) == (32000, 10, 1000)
    assert config.tools_max_read_bytes == 1024 * 1024 and config.tools_timeout == 15.0
    assert config.tools_enabled is None
    assert config.agents_tracing is False


def test_the_local_model_is_on_by_default_and_its_file_can_be_any_gguf():
    config = config_from_env({}, base_dir=BASE)
    assert (config.local_model, config.local_model_path) == (True, None)  # None: the bundled file
    assert (config.local_model_context, config.local_model_threads, config.local_model_max_tokens) == (4096, 0, 1024)
    config = config_from_env({"LOCAL_MODEL": "0", "LOCAL_MODEL_PATH": "models/qwen.gguf"}, base_dir=BASE)
    assert config.local_model is False and config.local_model_path == BASE / "models" / "qwen.gguf"
    with pytest.raises(ImproperlyConfigured, match="LOCAL_MODEL_CONTEXT must be a positive integer"):
        config_from_env({"LOCAL_MODEL_CONTEXT": "0"}, base_dir=BASE)


def test_production_without_a_secret_key_is_refused():
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY must be set"):
        config_from_env({"DEBUG": "0"}, base_dir=BASE)
    config = config_from_env({"DEBUG": "false", "SECRET_KEY": "s3cret"}, base_dir=BASE)
    assert config.debug is False and config.secret_key == "s3cret"


def test_postgres_redis_keys_and_lists():
    config = config_from_env(
        {
            "DATABASE_URL": "postgres://u:p@db.internal:5433/chat",
            "REDIS_URL": "redis://cache:6379/2",
            "GEMINI_API_KEY": "AIza-gemini",
            "OPENAI_API_KEY": "  ",
            "ALLOWED_HOSTS": "chat.example.com,.example.org",
            "CORS_ALLOWED_ORIGINS": "https://chat.example.com",
            "TOOLS_ENABLED": "read_file",
            "TOOLS_ALLOWED_DIRS": "docs=/srv/docs,/srv/code",
        },
        base_dir=BASE,
    )
    assert config.database["ENGINE"] == "django.db.backends.postgresql"
    assert (config.database["HOST"], config.database["PORT"], config.database["NAME"]) == ("db.internal", 5433, "chat")
    assert config.redis_url == "redis://cache:6379/2"
    assert config.google_api_key == "AIza-gemini"  # GEMINI_API_KEY accepted
    assert config.openai_api_key is None  # blank is unset
    assert config.allowed_hosts == ["chat.example.com", ".example.org"]
    assert config.tools_enabled == ["read_file"]
    assert config.tools_allowed_dirs == ["docs=/srv/docs", "/srv/code"]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"CHAT_MAX_MESSAGE_CHARS": "lots"}, "Invalid configuration"),
        ({"AGENT_MAX_TURNS": "0"}, "AGENT_MAX_TURNS must be a positive integer"),
        ({"MCP_MAX_RESULT_BYTES": "0"}, "MCP_MAX_RESULT_BYTES must be a positive integer"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be one of"),
    ],
)
def test_bad_values_name_the_variable(environ, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        config_from_env(environ, base_dir=BASE)


def test_settings_module_uses_redis_and_postgres_when_configured():
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.CHANNEL_LAYERS['default']['BACKEND']); print(s.DATABASES['default']['ENGINE']); print(s.DEBUG)"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "dreamytin.settings",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/test",
        "DEBUG": "0",
        "SECRET_KEY": "x" * 50,
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2]
    )
    assert out.stdout.split() == ["channels_redis.core.RedisChannelLayer", "django.db.backends.postgresql", "False"]


def test_a_broken_catalog_stops_start_up_naming_the_file(tmp_path):
    broken = tmp_path / "models.json"
    broken.write_text("{not json")
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "dreamytin.settings", "MODELS_FILE": str(broken)}
    out = subprocess.run(
        [sys.executable, "manage.py", "check"], env=env, capture_output=True, text=True, cwd=Path(__file__).parents[2]
    )
    assert out.returncode != 0
    assert f"Model catalog {broken} is not valid JSON" in out.stderr


def test_access_defaults_are_loopback_only_with_generous_limits():
    config = config_from_env({}, base_dir=BASE)
    assert config.auth_mode == "none" and config.auth_token is None
    assert config.rate_limit_turns is None and config.rate_limit_requests is None
    assert config.rate_limit_frames == Rate(30, 1) and config.rate_limit_login_failures == Rate(20, 3600)
    assert config.max_connections_per_address == 100 and config.rate_limit_ipv6_prefix == 64
    assert config.budget_usd_per_day is None and config.tools_allow_hardlinks is False


def test_fast_paths_are_on_unless_turned_off():
    assert config_from_env({}, base_dir=BASE).fast_paths is True
    assert config_from_env({"FAST_PATHS": "false"}, base_dir=BASE).fast_paths is False
    assert config_from_env({"FAST_PATHS": "0"}, base_dir=BASE).fast_paths is False


@pytest.mark.parametrize("token", [None, "", "short", "x" * 31])
def test_token_mode_without_a_long_token_fails_at_start_up(token):
    env = {"AUTH_MODE": "token"} | ({"AUTH_TOKEN": token} if token is not None else {})
    with pytest.raises(ImproperlyConfigured, match="AUTH_TOKEN of at least 32"):
        config_from_env(env, base_dir=BASE)


def test_a_token_that_cannot_be_a_subprotocol_is_refused():
    with pytest.raises(ImproperlyConfigured, match="AUTH_TOKEN may hold only"):
        config_from_env({"AUTH_MODE": "token", "AUTH_TOKEN": "a token with spaces, and a comma!!"}, base_dir=BASE)
    config = config_from_env({"AUTH_MODE": "Token", "AUTH_TOKEN": "k" * 32}, base_dir=BASE)
    assert config.auth_mode == "token" and config.auth_token == "k" * 32


def test_limits_and_budget_are_parsed_and_bad_ones_named():
    config = config_from_env(
        {"RATE_LIMIT_TURNS": "20/min", "RATE_LIMIT_REQUESTS": "600/hour", "RATE_LIMIT_FRAMES": "off",
         "BUDGET_USD_PER_DAY": "2.50", "AUTH_MODE": "django"},
        base_dir=BASE,
    )  # fmt: skip
    assert config.rate_limit_turns == Rate(20, 60) and config.rate_limit_requests == Rate(600, 3600)
    assert config.rate_limit_frames is None and config.budget_usd_per_day == Decimal("2.50")
    for name, value in [("RATE_LIMIT_TURNS", "20"), ("RATE_LIMIT_TURNS", "x/min"), ("RATE_LIMIT_FRAMES", "5/week"),
                        ("BUDGET_USD_PER_DAY", "lots"), ("BUDGET_USD_PER_DAY", "-1"), ("BUDGET_USD_PER_DAY", "NaN"),
                        ("AUTH_MODE", "open"), ("MAX_CONNECTIONS_PER_ADDRESS", "0"),
                        ("RATE_LIMIT_IPV6_PREFIX", "0"), ("RATE_LIMIT_IPV6_PREFIX", "129")]:  # fmt: skip
        with pytest.raises(ImproperlyConfigured, match=name):
            config_from_env({name: value}, base_dir=BASE)


def test_knowledge_settings():
    config = config_from_env({}, base_dir=BASE)
    assert config.knowledge_dirs == [] and config.knowledge_scan_interval == 2.0 and not config.knowledge_semantic
    assert (config.knowledge_max_file_bytes, config.knowledge_max_files) == (1024 * 1024, 50_000)
    config = config_from_env(
        {"KNOWLEDGE_DIRS": "notes,work=/srv/wiki", "KNOWLEDGE_SCAN_INTERVAL": "0", "KNOWLEDGE_SEMANTIC": "1"},
        base_dir=BASE,
    )
    assert config.knowledge_dirs == ["/srv/app/notes", "work=/srv/wiki"] and config.knowledge_scan_interval == 0
    assert config.knowledge_semantic
    with pytest.raises(ImproperlyConfigured, match="KNOWLEDGE_SCAN_INTERVAL must not be negative"):
        config_from_env({"KNOWLEDGE_SCAN_INTERVAL": "-1"}, base_dir=BASE)
    with pytest.raises(ImproperlyConfigured, match="KNOWLEDGE_MAX_FILES must be a positive integer"):
        config_from_env({"KNOWLEDGE_MAX_FILES": "0"}, base_dir=BASE)


def test_metrics_and_traces_settings(tmp_path):
    config = config_from_env({}, base_dir=BASE)
    assert (config.metrics, config.metrics_token, config.prometheus_multiproc_dir) == (True, None, None)
    assert (config.otel_exporter_otlp_endpoint, config.otel_service_name, config.otel_capture_content) == (
        None,
        "dreamytin",
        False,
    )
    config = config_from_env(
        {
            "METRICS": "0",
            "METRICS_TOKEN": "t" * 32,
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
            "OTEL_SERVICE_NAME": "chat-eu",
            "OTEL_CAPTURE_CONTENT": "1",
        },
        base_dir=BASE,
    )
    assert (config.metrics, config.metrics_token, config.prometheus_multiproc_dir) == (False, "t" * 32, tmp_path)
    assert config.otel_exporter_otlp_endpoint == "http://collector:4318"
    assert (config.otel_service_name, config.otel_capture_content) == ("chat-eu", True)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN must be at least 32 characters"),
        ({"PROMETHEUS_MULTIPROC_DIR": "/no/such/folder"}, "PROMETHEUS_MULTIPROC_DIR must be an existing folder"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT must be an http"),
    ],
)
def test_bad_metrics_and_traces_settings_name_the_variable(environ, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        config_from_env(environ, base_dir=BASE)


def test_conversation_keeping_settings():
    config = config_from_env({}, base_dir=BASE)
    assert config.title_model is None and config.retention_days is None
    assert config.import_max_bytes == 50 * 1024 * 1024
    assert config.mcp_max_result_bytes == 4 * 1024 * 1024
    config = config_from_env({"TITLE_MODEL": "none", "RETENTION_DAYS": "90", "IMPORT_MAX_BYTES": "1000"}, base_dir=BASE)
    assert (config.title_model, config.retention_days, config.import_max_bytes) == ("none", 90, 1000)
    assert config_from_env({"RETENTION_DAYS": "0"}, base_dir=BASE).retention_days is None
    for name, value in [("RETENTION_DAYS", "-3"), ("RETENTION_DAYS", "a month"), ("IMPORT_MAX_BYTES", "0")]:
        with pytest.raises(ImproperlyConfigured, match=name):
            config_from_env({name: value}, base_dir=BASE)


def test_tool_approval_is_off_by_default_and_names_tools_servers_or_all():
    config = config_from_env({}, base_dir=BASE)
    assert config.tools_require_approval == frozenset() and config.tool_approval_timeout == 3600.0
    config = config_from_env(
        {"TOOLS_REQUIRE_APPROVAL": "read_file, files,*", "TOOL_APPROVAL_TIMEOUT": "0"}, base_dir=BASE
    )
    assert config.tools_require_approval == {"read_file", "files", "*"} and config.tool_approval_timeout == 0
    with pytest.raises(ImproperlyConfigured, match="TOOL_APPROVAL_TIMEOUT"):
        config_from_env({"TOOL_APPROVAL_TIMEOUT": "-1"}, base_dir=BASE)
