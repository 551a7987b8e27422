"""Typed configuration, read once from the environment (django-environ).

Relative paths (MODELS_FILE, SYSTEM_PROMPT_FILE, TOOLS_ALLOWED_DIRS) are taken from the
project folder, so the server finds them whatever directory it is started from.

`settings.py` turns this into Django settings; tests build a `Config` from a plain mapping
instead of patching the process environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
DEV_SECRET_KEY = "dev-only-insecure-secret-key-do-not-use-in-production"  # noqa: S105
DEFAULT_CORS_ORIGINS = ("http://localhost:1420", "tauri://localhost")
DEFAULT_ALLOWED_HOSTS = ("localhost", "127.0.0.1", "[::1]")


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
    provider_retries: int
    provider_timeout: float
    tools_enabled: list[str] | None
    tools_allowed_dirs: list[str]
    tools_max_entries: int
    tools_max_read_bytes: int
    tools_timeout: float
    agents_tracing: bool
    secure_ssl_redirect: bool
    secure_hsts_seconds: int
    log_level: str
    log_format: str


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
            agents_tracing=env.bool("AGENTS_TRACING", default=False),
            secure_ssl_redirect=env.bool("SECURE_SSL_REDIRECT", default=False),
            secure_hsts_seconds=env.int("SECURE_HSTS_SECONDS", default=0),
            log_level=env.str("LOG_LEVEL", default="INFO").upper(),
            log_format=_choice(env.str("LOG_FORMAT", default="text"), "LOG_FORMAT", ("text", "json")),
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


def _positive(value: int, name: str) -> int:
    if value < 1:
        raise ImproperlyConfigured(f"{name} must be a positive integer, got {value}")
    return value


def _choice(value: str, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value
