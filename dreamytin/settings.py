"""Django settings, all taken from the environment through `dreamytin.config`."""

import os
import tempfile
from pathlib import Path

import environ

from dreamytin.config import BASE_DIR, config_from_env
from dreamytin.logging import secrets_register

# A `.env` next to manage.py fills in what the environment does not set.
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")
CONFIG = config_from_env(os.environ)
# Redacted from every log line, whether or not the environment still holds them.
secrets_register(CONFIG.openai_api_key, CONFIG.anthropic_api_key, CONFIG.google_api_key, CONFIG.auth_token)

DEBUG = CONFIG.debug
SECRET_KEY = CONFIG.secret_key
ALLOWED_HOSTS = CONFIG.allowed_hosts
CORS_ALLOWED_ORIGINS = CONFIG.cors_allowed_origins

INSTALLED_APPS = [
    # First: its runserver (Daphne's) replaces staticfiles' and serves HTTP and WebSocket.
    "dreamytin",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "ninja",
    "channels",
    "accounts",
    "tools",
    "chat",
    "knowledge",
    "observability",
    "webhooks",
]

MIDDLEWARE = [
    # Outermost, so the CORS headers are on every response, JSON error bodies included.
    "corsheaders.middleware.CorsMiddleware",
    # A span per request when OTEL_EXPORTER_OTLP_ENDPOINT is set (nothing otherwise).
    "observability.middleware.TraceMiddleware",
    "dreamytin.middleware.RequestLogMiddleware",
    "dreamytin.middleware.JsonErrorMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After the session and the user are known: who may call the API, and how often.
    "accounts.middleware.AccessMiddleware",
    "dreamytin.middleware.JsonBodyMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "dreamytin.urls"
ASGI_APPLICATION = "dreamytin.asgi.application"
# The frontend calls `/health`, `/models`: never redirect them to a slashed URL.
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": CONFIG.database}
# Under ASGI, Django runs each request's sync work on a fresh thread, so persistent connections
# (CONN_MAX_AGE > 0) can be stranded with their threads; Django advises a pool instead, which
# PostgreSQL gets below. SQLite opens a connection in microseconds.
DATABASES["default"]["CONN_MAX_AGE"] = CONFIG.db_conn_max_age
DATABASES["default"]["CONN_HEALTH_CHECKS"] = CONFIG.db_conn_max_age > 0
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and CONFIG.db_conn_max_age == 0:
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {"min_size": 1, "max_size": CONFIG.db_pool_size}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the writer and makes commits cheap (NORMAL is safe from
    # corruption in WAL mode); IMMEDIATE takes the write lock up front, so two threads never
    # deadlock upgrading a read lock ("database is locked").
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )
    # Tests use a file too: an in-memory database shares one cache between threads, whose table
    # locks do not wait (the server's database threads would fail instead of queueing).
    DATABASES["default"]["TEST"] = {"NAME": str(Path(tempfile.gettempdir()) / f"dreamytin-test-{os.getpid()}.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if CONFIG.redis_url:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [CONFIG.redis_url]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Providers and the model catalog (read through django.conf.settings, so tests can override).
OPENAI_API_KEY = CONFIG.openai_api_key
ANTHROPIC_API_KEY = CONFIG.anthropic_api_key
GOOGLE_API_KEY = CONFIG.google_api_key
OPENAI_BASE_URL = CONFIG.openai_base_url
ANTHROPIC_BASE_URL = CONFIG.anthropic_base_url
GEMINI_BASE_URL = CONFIG.gemini_base_url
MODELS_FILE = CONFIG.models_file
# The bundled llama.cpp model (chat.local_model).
LOCAL_MODEL = CONFIG.local_model
LOCAL_MODEL_PATH = CONFIG.local_model_path
LOCAL_MODEL_CONTEXT = CONFIG.local_model_context
LOCAL_MODEL_THREADS = CONFIG.local_model_threads
LOCAL_MODEL_MAX_TOKENS = CONFIG.local_model_max_tokens
SYSTEM_PROMPT_FILE = CONFIG.system_prompt_file

# Chat turns.
CHAT_MAX_MESSAGE_CHARS = CONFIG.chat_max_message_chars
# Frames larger than this are refused at the socket (close code 1009), before any parsing.
CHAT_MAX_FRAME_BYTES = 1024 * 1024
AGENT_MAX_TURNS = CONFIG.agent_max_turns
TURN_DETACH_GRACE = CONFIG.turn_detach_grace
TURN_DRAIN_SECONDS = CONFIG.turn_drain_seconds
PROVIDER_RETRIES = CONFIG.provider_retries
PROVIDER_TIMEOUT = CONFIG.provider_timeout
AGENTS_TRACING = CONFIG.agents_tracing
# Metrics and traces (observability/, docs/observability.md).
METRICS = CONFIG.metrics
METRICS_TOKEN = CONFIG.metrics_token
PROMETHEUS_MULTIPROC_DIR = CONFIG.prometheus_multiproc_dir
OTEL_EXPORTER_OTLP_ENDPOINT = CONFIG.otel_exporter_otlp_endpoint
OTEL_SERVICE_NAME = CONFIG.otel_service_name
OTEL_CAPTURE_CONTENT = CONFIG.otel_capture_content
# The hand-written fast paths (chat.openai_client, chat.store.sql); off: the libraries' stock paths.
FAST_PATHS = CONFIG.fast_paths

# Tools.
TOOLS_ENABLED = CONFIG.tools_enabled
TOOLS_ALLOWED_DIRS = CONFIG.tools_allowed_dirs
TOOLS_MAX_ENTRIES = CONFIG.tools_max_entries
TOOLS_MAX_READ_BYTES = CONFIG.tools_max_read_bytes
TOOLS_TIMEOUT = CONFIG.tools_timeout
# Tools the user approves call by call (chat/turn/approval.py): built-in or MCP tool names, MCP
# server names, or `*`; and the seconds after which a request left unanswered is declined (0: never).
TOOLS_REQUIRE_APPROVAL = CONFIG.tools_require_approval
TOOL_APPROVAL_TIMEOUT = CONFIG.tool_approval_timeout
# MCP servers (tools.mcp): the parsed entries of MCP_SERVERS_FILE, by name.
MCP_SERVERS = CONFIG.mcp_servers
MCP_TIMEOUT = CONFIG.mcp_timeout
MCP_START_TIMEOUT = CONFIG.mcp_start_timeout
# The largest message a stdio MCP server may send, in bytes; refused unread beyond it.
MCP_MAX_RESULT_BYTES = CONFIG.mcp_max_result_bytes

TOOLS_ALLOW_HARDLINKS = CONFIG.tools_allow_hardlinks

# Who may connect, and how much (accounts/, docs/security.md).
AUTH_MODE = CONFIG.auth_mode
AUTH_TOKEN = CONFIG.auth_token
RATE_LIMIT_TURNS = CONFIG.rate_limit_turns
RATE_LIMIT_REQUESTS = CONFIG.rate_limit_requests
RATE_LIMIT_FRAMES = CONFIG.rate_limit_frames
MAX_CONNECTIONS_PER_ADDRESS = CONFIG.max_connections_per_address
RATE_LIMIT_IPV6_PREFIX = CONFIG.rate_limit_ipv6_prefix
RATE_LIMIT_LOGIN_FAILURES = CONFIG.rate_limit_login_failures
BUDGET_USD_PER_DAY = CONFIG.budget_usd_per_day
# Rate-limit and connection counters live in Redis when it is set (shared by the workers).
REDIS_URL = CONFIG.redis_url

# Conversations: model-made titles (chat.titles), import size, retention (chat.retention).
TITLE_MODEL = CONFIG.title_model
IMPORT_MAX_BYTES = CONFIG.import_max_bytes
RETENTION_DAYS = CONFIG.retention_days

# Webhooks at a turn's end (webhooks/): where, signed with what, and how patiently.
WEBHOOK_URLS = CONFIG.webhook_urls
WEBHOOK_SECRET = CONFIG.webhook_secret
WEBHOOK_TIMEOUT = CONFIG.webhook_timeout
WEBHOOK_CONCURRENCY = CONFIG.webhook_concurrency

# Knowledge base (the `search_knowledge` tool).
KNOWLEDGE_DIRS = CONFIG.knowledge_dirs
KNOWLEDGE_MAX_FILE_BYTES = CONFIG.knowledge_max_file_bytes
KNOWLEDGE_MAX_FILES = CONFIG.knowledge_max_files
KNOWLEDGE_SCAN_INTERVAL = CONFIG.knowledge_scan_interval
KNOWLEDGE_SEMANTIC = CONFIG.knowledge_semantic

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# Production hardening; in DEBUG (the default, a development server) these stay off so plain
# http://localhost works.
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Off by default: a self-hosted server often runs on plain HTTP behind a proxy or on a LAN.
SECURE_SSL_REDIRECT = CONFIG.secure_ssl_redirect
SECURE_HSTS_SECONDS = CONFIG.secure_hsts_seconds
SECURE_HSTS_INCLUDE_SUBDOMAINS = CONFIG.secure_hsts_seconds > 0

LOGGING_CONFIG = "dreamytin.logging.logging_configure"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"()": "dreamytin.logging.TextFormatter", "format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "dreamytin.logging.JsonFormatter"},
    },
    "filters": {
        "redact": {"()": "dreamytin.logging.RedactSecretsFilter"},
        "one_line": {"()": "dreamytin.logging.OneLineFilter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": CONFIG.log_format,
            "filters": ["redact"],
        },
    },
    "root": {"handlers": ["console"], "level": CONFIG.log_level},
    "loggers": {
        # LiteLLM logs request bodies (and with them keys in headers) at DEBUG.
        "LiteLLM": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        # The MCP client's HTTP library and transports log every request and session id at INFO.
        "httpx2": {"level": "WARNING"},
        "mcp": {"level": "WARNING"},
        "openai.agents": {"level": "WARNING"},
        # A request with a Host not in ALLOWED_HOSTS: one line (Django logs a traceback).
        "django.security.DisallowedHost": {"filters": ["one_line"]},
    },
}
