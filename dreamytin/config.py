"""Typed configuration, read once from the environment (django-environ).

Relative paths (MODELS_FILE, SYSTEM_PROMPT_FILE, TOOLS_ALLOWED_DIRS, MCP_SERVERS_FILE,
KNOWLEDGE_DIRS) are taken from the project folder, so the server finds them whatever directory it
is started from.

`settings.py` turns this into Django settings; tests build a `Config` from a plain mapping
instead of patching the process environment.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

from tools.mcp.config import McpConfigError, McpEntry, mcp_servers_load

BASE_DIR = Path(__file__).resolve().parent.parent
DEV_SECRET_KEY = "dev-only-insecure-secret-key-do-not-use-in-production"  # noqa: S105
DEFAULT_CORS_ORIGINS = ("http://localhost:1420", "http://127.0.0.1:1420", "tauri://localhost")
DEFAULT_ALLOWED_HOSTS = ("localhost", "127.0.0.1", "[::1]")
AUTH_MODES = ("none", "token", "django")
MIN_TOKEN_CHARS = 32
# The token also travels as a WebSocket subprotocol, whose value must be an HTTP token (RFC 9110).
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_PERIODS = {
    **dict.fromkeys(("s", "sec", "second"), 1),
    **dict.fromkeys(("m", "min", "minute"), 60),
    **dict.fromkeys(("h", "hour"), 3600),
    **dict.fromkeys(("d", "day"), 86400),
}


@dataclass(frozen=True)
class Rate:
    """At most `count` events in each window of `seconds`."""

    count: int
    seconds: int

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds}s"


@dataclass(frozen=True, kw_only=True)
class Config:
    debug: bool
    secret_key: str
    allowed_hosts: list[str]
    cors_allowed_origins: list[str]
    database: dict[str, Any]
    redis_url: str | None
    db_conn_max_age: int
    db_pool_size: int
    openai_api_key: str | None
    anthropic_api_key: str | None
    google_api_key: str | None
    openai_base_url: str | None
    anthropic_base_url: str | None
    gemini_base_url: str | None
    local_model: bool
    local_model_path: Path | None
    local_model_context: int
    local_model_threads: int
    local_model_max_tokens: int
    models_file: Path
    system_prompt_file: Path
    chat_max_message_chars: int
    agent_max_turns: int
    turn_detach_grace: float
    turn_drain_seconds: float
    provider_retries: int
    provider_timeout: float
    tools_enabled: list[str] | None
    tools_allowed_dirs: list[str]
    tools_max_entries: int
    tools_max_read_bytes: int
    tools_timeout: float
    tools_require_approval: frozenset[str]
    tool_approval_timeout: float
    mcp_servers: dict[str, McpEntry]
    mcp_timeout: float
    mcp_start_timeout: float
    mcp_max_result_bytes: int
    knowledge_dirs: list[str]
    knowledge_max_file_bytes: int
    knowledge_max_files: int
    knowledge_scan_interval: float
    knowledge_semantic: bool
    agents_tracing: bool
    metrics: bool
    metrics_token: str | None
    prometheus_multiproc_dir: Path | None
    otel_exporter_otlp_endpoint: str | None
    otel_service_name: str
    otel_capture_content: bool
    fast_paths: bool
    secure_ssl_redirect: bool
    secure_hsts_seconds: int
    log_level: str
    log_format: str
    tools_allow_hardlinks: bool
    auth_mode: str
    auth_token: str | None
    rate_limit_turns: Rate | None
    rate_limit_requests: Rate | None
    rate_limit_frames: Rate | None
    rate_limit_login_failures: Rate | None
    max_connections_per_address: int
    rate_limit_ipv6_prefix: int
    budget_usd_per_day: Decimal | None
    title_model: str | None
    import_max_bytes: int
    retention_days: int | None
    webhook_urls: list[str]
    webhook_secret: bytes | None
    webhook_timeout: float
    webhook_concurrency: int


def _optional(env: environ.Env, name: str) -> str | None:
    value = env.str(name, default="").strip()
    return value or None


def config_from_env(environment: Mapping[str, str], *, base_dir: Path = BASE_DIR) -> Config:
    """Parse every setting; raise `ImproperlyConfigured` with the variable's name when one is bad."""
    env = environ.Env()
    # An instance attribute shadows django-environ's class-level `os.environ`, so a test can
    # hand in any mapping.
    env.ENVIRON = dict(environment)
    try:
        debug = env.bool("DEBUG", default=True)
        secret_key = _optional(env, "SECRET_KEY")
        if secret_key is None:
            if not debug:
                raise ImproperlyConfigured(
                    "SECRET_KEY must be set when DEBUG is off (generate one with "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`)."
                )
            secret_key = DEV_SECRET_KEY
        tools_enabled = env.list("TOOLS_ENABLED", default=[])
        auth_mode = _choice(env.str("AUTH_MODE", default="none").strip().lower(), "AUTH_MODE", AUTH_MODES)
        auth_token = _auth_token(_optional(env, "AUTH_TOKEN"), auth_mode)
        return Config(
            debug=debug,
            secret_key=secret_key,
            allowed_hosts=env.list("ALLOWED_HOSTS", default=list(DEFAULT_ALLOWED_HOSTS)),
            cors_allowed_origins=env.list("CORS_ALLOWED_ORIGINS", default=list(DEFAULT_CORS_ORIGINS)),
            database=env.db_url("DATABASE_URL", default=f"sqlite:///{base_dir / 'db.sqlite3'}"),
            redis_url=_optional(env, "REDIS_URL"),
            db_conn_max_age=env.int("DB_CONN_MAX_AGE", default=0),
            db_pool_size=_positive(env.int("DB_POOL_SIZE", default=10), "DB_POOL_SIZE"),
            openai_api_key=_optional(env, "OPENAI_API_KEY"),
            anthropic_api_key=_optional(env, "ANTHROPIC_API_KEY"),
            google_api_key=_optional(env, "GOOGLE_API_KEY") or _optional(env, "GEMINI_API_KEY"),
            openai_base_url=_optional(env, "OPENAI_BASE_URL"),
            anthropic_base_url=_optional(env, "ANTHROPIC_BASE_URL"),
            gemini_base_url=_optional(env, "GEMINI_BASE_URL"),
            local_model=env.bool("LOCAL_MODEL", default=True),
            local_model_path=_optional_path(env, "LOCAL_MODEL_PATH", base_dir),
            local_model_context=_positive(env.int("LOCAL_MODEL_CONTEXT", default=4096), "LOCAL_MODEL_CONTEXT"),
            # 0: half the cores, as llama.cpp does (chat.local_model says why).
            local_model_threads=env.int("LOCAL_MODEL_THREADS", default=0),
            local_model_max_tokens=_positive(env.int("LOCAL_MODEL_MAX_TOKENS", default=1024), "LOCAL_MODEL_MAX_TOKENS"),
            models_file=base_dir / env.str("MODELS_FILE", default="chat/models.json"),
            system_prompt_file=base_dir / env.str("SYSTEM_PROMPT_FILE", default="chat/system_prompt.md"),
            chat_max_message_chars=_positive(
                env.int("CHAT_MAX_MESSAGE_CHARS", default=32_000), "CHAT_MAX_MESSAGE_CHARS"
            ),
            agent_max_turns=_positive(env.int("AGENT_MAX_TURNS", default=10), "AGENT_MAX_TURNS"),
            turn_detach_grace=_non_negative(env.float("TURN_DETACH_GRACE", default=60.0), "TURN_DETACH_GRACE"),
            turn_drain_seconds=_non_negative(env.float("TURN_DRAIN_SECONDS", default=25.0), "TURN_DRAIN_SECONDS"),
            provider_retries=env.int("PROVIDER_RETRIES", default=2),
            provider_timeout=env.float("PROVIDER_TIMEOUT", default=120.0),
            tools_enabled=tools_enabled or None,
            tools_allowed_dirs=[
                _root_spec(spec, base_dir) for spec in env.list("TOOLS_ALLOWED_DIRS", default=["workspace"])
            ],
            tools_max_entries=_positive(env.int("TOOLS_MAX_ENTRIES", default=1000), "TOOLS_MAX_ENTRIES"),
            tools_max_read_bytes=_positive(
                env.int("TOOLS_MAX_READ_BYTES", default=1024 * 1024), "TOOLS_MAX_READ_BYTES"
            ),
            tools_timeout=env.float("TOOLS_TIMEOUT", default=15.0),
            tools_require_approval=frozenset(
                name.strip() for name in env.list("TOOLS_REQUIRE_APPROVAL", default=[]) if name.strip()
            ),
            tool_approval_timeout=_non_negative(
                env.float("TOOL_APPROVAL_TIMEOUT", default=3600.0), "TOOL_APPROVAL_TIMEOUT"
            ),
            mcp_servers=_mcp_servers(_optional(env, "MCP_SERVERS_FILE"), base_dir, environment),
            mcp_timeout=_positive_seconds(env.float("MCP_TIMEOUT", default=30.0), "MCP_TIMEOUT"),
            mcp_start_timeout=_positive_seconds(env.float("MCP_START_TIMEOUT", default=60.0), "MCP_START_TIMEOUT"),
            mcp_max_result_bytes=_positive(
                env.int("MCP_MAX_RESULT_BYTES", default=4 * 1024 * 1024), "MCP_MAX_RESULT_BYTES"
            ),
            knowledge_dirs=[_root_spec(spec, base_dir) for spec in env.list("KNOWLEDGE_DIRS", default=[])],
            knowledge_max_file_bytes=_positive(
                env.int("KNOWLEDGE_MAX_FILE_BYTES", default=1024 * 1024), "KNOWLEDGE_MAX_FILE_BYTES"
            ),
            knowledge_max_files=_positive(env.int("KNOWLEDGE_MAX_FILES", default=50_000), "KNOWLEDGE_MAX_FILES"),
            knowledge_scan_interval=_non_negative(
                env.float("KNOWLEDGE_SCAN_INTERVAL", default=2.0), "KNOWLEDGE_SCAN_INTERVAL"
            ),
            knowledge_semantic=env.bool("KNOWLEDGE_SEMANTIC", default=False),
            agents_tracing=env.bool("AGENTS_TRACING", default=False),
            metrics=env.bool("METRICS", default=True),
            metrics_token=_metrics_token(_optional(env, "METRICS_TOKEN")),
            prometheus_multiproc_dir=_multiproc_dir(_optional(env, "PROMETHEUS_MULTIPROC_DIR")),
            otel_exporter_otlp_endpoint=_otlp_endpoint(_optional(env, "OTEL_EXPORTER_OTLP_ENDPOINT")),
            otel_service_name=_optional(env, "OTEL_SERVICE_NAME") or "dreamytin",
            otel_capture_content=env.bool("OTEL_CAPTURE_CONTENT", default=False),
            fast_paths=env.bool("FAST_PATHS", default=True),
            secure_ssl_redirect=env.bool("SECURE_SSL_REDIRECT", default=False),
            secure_hsts_seconds=env.int("SECURE_HSTS_SECONDS", default=0),
            log_level=env.str("LOG_LEVEL", default="INFO").upper(),
            log_format=_choice(env.str("LOG_FORMAT", default="text"), "LOG_FORMAT", ("text", "json")),
            tools_allow_hardlinks=env.bool("TOOLS_ALLOW_HARDLINKS", default=False),
            auth_mode=auth_mode,
            auth_token=auth_token,
            rate_limit_turns=_rate(env.str("RATE_LIMIT_TURNS", default=""), "RATE_LIMIT_TURNS"),
            rate_limit_requests=_rate(env.str("RATE_LIMIT_REQUESTS", default=""), "RATE_LIMIT_REQUESTS"),
            rate_limit_frames=_rate(env.str("RATE_LIMIT_FRAMES", default="30/sec"), "RATE_LIMIT_FRAMES"),
            rate_limit_login_failures=_rate(
                env.str("RATE_LIMIT_LOGIN_FAILURES", default="20/hour"), "RATE_LIMIT_LOGIN_FAILURES"
            ),
            max_connections_per_address=_positive(
                env.int("MAX_CONNECTIONS_PER_ADDRESS", default=100), "MAX_CONNECTIONS_PER_ADDRESS"
            ),
            rate_limit_ipv6_prefix=_ipv6_prefix(env.int("RATE_LIMIT_IPV6_PREFIX", default=64)),
            budget_usd_per_day=_money(env.str("BUDGET_USD_PER_DAY", default=""), "BUDGET_USD_PER_DAY"),
            # Unset: the local model when it runs; "none": titles stay the first message.
            # A catalog id is checked against the catalog at start-up (chat.apps).
            title_model=_optional(env, "TITLE_MODEL"),
            import_max_bytes=_positive(env.int("IMPORT_MAX_BYTES", default=50 * 1024 * 1024), "IMPORT_MAX_BYTES"),
            retention_days=_retention(env.str("RETENTION_DAYS", default="")),
            webhook_urls=(webhook_urls := _webhook_urls(env.list("WEBHOOK_URLS", default=[]))),
            webhook_secret=_webhook_secret(_optional(env, "WEBHOOK_SECRET"), needed=bool(webhook_urls)),
            webhook_timeout=_positive_seconds(env.float("WEBHOOK_TIMEOUT", default=10.0), "WEBHOOK_TIMEOUT"),
            webhook_concurrency=_positive(env.int("WEBHOOK_CONCURRENCY", default=8), "WEBHOOK_CONCURRENCY"),
        )
    except ValueError as exc:  # django-environ's casts raise ValueError with the bad value
        raise ImproperlyConfigured(f"Invalid configuration: {exc}") from exc


def _optional_path(env: environ.Env, name: str, base_dir: Path) -> Path | None:
    value = _optional(env, name)
    return None if value is None else base_dir / Path(value).expanduser()


def _root_spec(spec: str, base_dir: Path) -> str:
    """`path` or `name=path`; a relative path is taken from the project folder."""
    name, sep, path = spec.partition("=")
    if not sep:
        return str(base_dir / Path(spec).expanduser())
    return f"{name}={base_dir / Path(path).expanduser()}"


def _mcp_servers(path: str | None, base_dir: Path, environment: Mapping[str, str]) -> dict[str, McpEntry]:
    """Unset: no MCP servers. A file that cannot be read or parsed is a start-up error; a server
    that fails to start later is not (it shows in `/health`)."""
    if path is None:
        return {}
    try:
        return mcp_servers_load(base_dir / Path(path).expanduser(), environment)
    except McpConfigError as exc:
        raise ImproperlyConfigured(f"MCP_SERVERS_FILE: {exc}") from exc


def _positive_seconds(value: float, name: str) -> float:
    if value <= 0:
        raise ImproperlyConfigured(f"{name} must be a positive number of seconds, got {value}")
    return value


def _positive(value: int, name: str) -> int:
    if value < 1:
        raise ImproperlyConfigured(f"{name} must be a positive integer, got {value}")
    return value


def _non_negative(value: float, name: str) -> float:
    if value < 0:
        raise ImproperlyConfigured(f"{name} must not be negative, got {value}")
    return value


def _choice(value: str, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _auth_token(token: str | None, mode: str) -> str | None:
    if mode != "token":
        return None
    if token is None or len(token) < MIN_TOKEN_CHARS:
        raise ImproperlyConfigured(
            f"AUTH_MODE=token needs AUTH_TOKEN of at least {MIN_TOKEN_CHARS} characters (generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)."
        )
    if not _TOKEN_CHARS.fullmatch(token):
        raise ImproperlyConfigured(
            "AUTH_TOKEN may hold only letters, digits and !#$%&'*+-.^_`|~ (it travels as a WebSocket subprotocol)."
        )
    return token


def _metrics_token(token: str | None) -> str | None:
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise ImproperlyConfigured(
            f"METRICS_TOKEN must be at least {MIN_TOKEN_CHARS} characters (generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)."
        )
    return token


def _multiproc_dir(path: str | None) -> Path | None:
    """prometheus_client reads the variable itself; a missing folder would only fail at the
    first counter, in the middle of a turn."""
    if path is None:
        return None
    folder = Path(path)
    if not folder.is_dir():
        raise ImproperlyConfigured(f"PROMETHEUS_MULTIPROC_DIR must be an existing folder, got {path!r}")
    return folder


def _otlp_endpoint(url: str | None) -> str | None:
    if url is None:
        return None
    if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", url):
        raise ImproperlyConfigured(
            f"OTEL_EXPORTER_OTLP_ENDPOINT must be an http(s) URL such as http://collector:4318, got {url!r}"
        )
    return url.rstrip("/")


def _rate(value: str, name: str) -> Rate | None:
    """`20/min` (also s, sec, second, m, minute, h, hour, d, day); empty or `off`: no limit."""
    value = value.strip().lower()
    if value in ("", "off", "0"):
        return None
    count, _, period = value.partition("/")
    if not count.isdigit() or int(count) < 1 or period not in _PERIODS:
        raise ImproperlyConfigured(f"{name} must look like 20/min (a count per s, min, hour or day), got {value!r}")
    return Rate(count=int(count), seconds=_PERIODS[period])


def _retention(value: str) -> int | None:
    """Days a conversation is kept after its last change; empty or 0: for ever."""
    value = value.strip()
    if value in ("", "0"):
        return None
    if not value.isdigit():
        raise ImproperlyConfigured(f"RETENTION_DAYS must be a whole number of days (0: keep for ever), got {value!r}")
    return int(value)


def _ipv6_prefix(value: int) -> int:
    if not 1 <= value <= 128:
        raise ImproperlyConfigured(f"RATE_LIMIT_IPV6_PREFIX must be a prefix length from 1 to 128, got {value}")
    return value


def _money(value: str, name: str) -> Decimal | None:
    value = value.strip()
    if not value:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise ImproperlyConfigured(f"{name} must be an amount in US dollars, got {value!r}") from exc
    if not amount.is_finite() or amount < 0:
        raise ImproperlyConfigured(f"{name} must be an amount of 0 or more US dollars, got {value!r}")
    return amount


def _webhook_urls(values: list[str]) -> list[str]:
    urls = [value.strip() for value in values if value.strip()]
    for url in urls:
        if not re.match(r"^https?://[^/\s]+", url):
            raise ImproperlyConfigured(f"WEBHOOK_URLS: {url!r} is not an http(s) URL.")
    return urls


def _webhook_secret(value: str | None, *, needed: bool) -> bytes | None:
    """`whsec_<base64>` (Standard Webhooks): the key is the decoded bytes."""
    if value is None:
        if needed:
            raise ImproperlyConfigured("WEBHOOK_SECRET must be set with WEBHOOK_URLS (whsec_<base64 of 24-64 bytes>).")
        return None
    encoded = value.removeprefix("whsec_")
    try:
        key = base64.b64decode(encoded, validate=True)
    except ValueError as exc:
        raise ImproperlyConfigured("WEBHOOK_SECRET must be whsec_ followed by base64.") from exc
    if not value.startswith("whsec_") or not 24 <= len(key) <= 64:
        raise ImproperlyConfigured("WEBHOOK_SECRET must be whsec_ followed by the base64 of 24 to 64 random bytes.")
    return key
