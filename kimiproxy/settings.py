"""Every setting of kimiproxy, read once from the environment (django-environ).

Code reads ``settings.X``, never ``os.environ``. A missing or malformed value fails loudly with
``ImproperlyConfigured`` at start-up. Every setting of our own is named ``KIMIPROXY_<NAME>`` and listed,
with its default, in the README's configuration table.
"""

from __future__ import annotations

import logging
import zoneinfo
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from accounts.crypto import derive_key
from gateway.openai.model_names import parse_aliases
from kimiproxy import __version__

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False) if (BASE_DIR / ".env").exists() else None

log = logging.getLogger("kimiproxy.settings")

DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me"
DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default=DEV_SECRET_KEY)
if SECRET_KEY == DEV_SECRET_KEY and not DEBUG and not env.bool("KIMIPROXY_ALLOW_DEV_SECRET", default=False):
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (the dev default is public).")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "corsheaders",
    "accounts",
    "gateway",
]

MIDDLEWARE = [
    "gateway.api.middleware.ApiJsonErrorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "kimiproxy.staticfiles.AsyncWhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# The API paths (/v1/, /token/, health) are served by a lean handler with only these (kimiproxy/handlers.py):
# no sessions, auth, messages or CSRF, each of which costs an async request a thread hop.
KIMIPROXY_API_MIDDLEWARE = [
    "gateway.api.middleware.ApiJsonErrorsMiddleware",
    "corsheaders.middleware.CorsMiddleware",
]

ROOT_URLCONF = "kimiproxy.urls"
ASGI_APPLICATION = "kimiproxy.asgi.application"
WSGI_APPLICATION = "kimiproxy.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

# --- Database -------------------------------------------------------------------------------------
# SQLite under data/ for a first run; Postgres in production. Connections are never held across a
# stream (the gateway closes them before the upstream call), so the Postgres pool is sized for the
# short transactions only.
DATA_DIR = Path(env.str("KIMIPROXY_DATA_DIR", default=str(BASE_DIR / "data")))
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'kimiproxy.sqlite3'}")}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    if _db["NAME"] != ":memory:":
        DATA_DIR.mkdir(parents=True, exist_ok=True)
    _db.setdefault("OPTIONS", {}).update(
        {
            # IMMEDIATE takes the write lock at BEGIN, so two writers queue on the busy timeout
            # instead of failing with "database is locked" when one upgrades a read lock.
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
elif _db["ENGINE"] == "django.db.backends.postgresql":
    _db.setdefault("OPTIONS", {})
    if env.bool("KIMIPROXY_DB_POOL", default=True):
        _db["OPTIONS"]["pool"] = {
            "min_size": env.int("KIMIPROXY_DB_POOL_MIN", default=2),
            "max_size": env.int("KIMIPROXY_DB_POOL_MAX", default=20),
            "timeout": env.float("KIMIPROXY_DB_POOL_TIMEOUT", default=10.0),
        }
    _db.setdefault("CONN_MAX_AGE", 0)
    # Server-side binding lets Postgres reuse plans (prepared after 5 runs per connection), less database
    # CPU per request (bench/README.md). Set false behind a transaction-mode pooler (PgBouncer).
    if env.bool("KIMIPROXY_DB_PREPARE", default=True):
        _db["OPTIONS"].update({"server_side_binding": True, "prepare_threshold": 5})
_db.setdefault("TEST", {})
# On Postgres the request path's hand-written statements run on the event loop through psycopg's async
# pool (gateway/db/eventloop.py), one pool per worker, besides Django's pool above; false sends them
# through the worker threads like everything else.
KIMIPROXY_DB_ASYNC = env.bool("KIMIPROXY_DB_ASYNC", default=True)
KIMIPROXY_DB_ASYNC_POOL_MAX = env.int("KIMIPROXY_DB_ASYNC_POOL_MAX", default=10)
KIMIPROXY_DB_ASYNC_POOL_TIMEOUT = env.float("KIMIPROXY_DB_POOL_TIMEOUT", default=10.0)
# Threads per process that run database work for async requests (gateway/db/threads.py); keep it at or
# below the Postgres pool size.
KIMIPROXY_DB_THREADS = env.int("KIMIPROXY_DB_THREADS", default=16)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (optional Redis) --------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("KIMIPROXY_STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").exists() else []
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Request bodies: base64 files make big JSON bodies; larger ones get a JSON 413 from the view. ---
KIMIPROXY_MAX_BODY_BYTES = env.int("KIMIPROXY_MAX_BODY_BYTES", default=150 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = KIMIPROXY_MAX_BODY_BYTES + 1024 * 1024

# --- Security ---------------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("KIMIPROXY_SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env.bool("KIMIPROXY_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("KIMIPROXY_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = env.bool("KIMIPROXY_HSTS_PRELOAD", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if env.bool("KIMIPROXY_BEHIND_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
KIMIPROXY_ADMIN_PATH = env.str("KIMIPROXY_ADMIN_PATH", default="admin/").strip("/") + "/"
CORS_ALLOWED_ORIGINS = env.list("KIMIPROXY_CORS_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/(v1/|token/check).*$"

# --- Token encryption --------------------------------------------------------------------------------
# KIMIPROXY_TOKEN_KEY: one Fernet key, or several separated by commas (newest first) while rotating.
# Generate one with: python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"
_token_keys = env.list("KIMIPROXY_TOKEN_KEY", default=[])
if not _token_keys:
    log.warning("KIMIPROXY_TOKEN_KEY is not set: deriving the token key from SECRET_KEY.")
    _token_keys = [derive_key(SECRET_KEY)]
KIMIPROXY_TOKEN_KEYS = _token_keys

# --- Upstream -----------------------------------------------------------------------------------------
KIMI_BASE_URL = env.str("KIMI_BASE_URL", default="https://www.kimi.com").rstrip("/")
KIMI_AUTH_URL = env.str("KIMI_AUTH_URL", default="https://auth.kimi.com").rstrip("/")
KIMI_LEGACY_BASE_URL = env.str("KIMI_LEGACY_BASE_URL", default="https://www.kimi.com").rstrip("/")
# The second deployment (kimi-web-protocol.md C.5): accounts whose token was issued on kimi.ai use these.
KIMI_AI_BASE_URL = env.str("KIMI_AI_BASE_URL", default="https://www.kimi.ai").rstrip("/")
KIMI_AI_AUTH_URL = env.str("KIMI_AI_AUTH_URL", default="https://auth.kimi.ai").rstrip("/")
KIMIPROXY_CONNECT_TIMEOUT = env.float("KIMIPROXY_CONNECT_TIMEOUT", default=10.0)
KIMIPROXY_FIRST_BYTE_TIMEOUT = env.float("KIMIPROXY_FIRST_BYTE_TIMEOUT", default=60.0)
KIMIPROXY_IDLE_TIMEOUT = env.float("KIMIPROXY_IDLE_TIMEOUT", default=90.0)
KIMIPROXY_NO_PROGRESS_TIMEOUT = env.float("KIMIPROXY_NO_PROGRESS_TIMEOUT", default=300.0)
KIMIPROXY_UPSTREAM_MAX_CONNECTIONS = env.int("KIMIPROXY_UPSTREAM_MAX_CONNECTIONS", default=1000)
# aiohttp (default: several times less CPU per streamed chunk, gateway/kimi/transport/aio.py) or httpx.
KIMIPROXY_UPSTREAM_CLIENT = env.str("KIMIPROXY_UPSTREAM_CLIENT", default="aiohttp")
if KIMIPROXY_UPSTREAM_CLIENT not in ("aiohttp", "httpx"):
    raise ImproperlyConfigured("KIMIPROXY_UPSTREAM_CLIENT must be 'aiohttp' or 'httpx'.")
KIMIPROXY_FILE_MAX_BYTES = env.int("KIMIPROXY_FILE_MAX_BYTES", default=100 * 1024 * 1024)
KIMIPROXY_FETCH_TIMEOUT = env.float("KIMIPROXY_FETCH_TIMEOUT", default=30.0)
KIMIPROXY_FETCH_MAX_REDIRECTS = env.int("KIMIPROXY_FETCH_MAX_REDIRECTS", default=5)
KIMIPROXY_FETCH_ALLOW = env.list("KIMIPROXY_FETCH_ALLOW", default=[])
KIMIPROXY_PARSE_TIMEOUT = env.float("KIMIPROXY_PARSE_TIMEOUT", default=120.0)
# A flattened prompt above this many UTF-8 bytes sends its earlier history as an uploaded .txt file
# (protocol doc C.9): agent steps of 40-50 KB stay inline, since no source gives the web chat's maximum
# and a model follows inline instructions more reliably than a file's.
KIMIPROXY_PROMPT_ATTACH_BYTES = env.int("KIMIPROXY_PROMPT_ATTACH_BYTES", default=131072)
# Seconds a deployment's model catalogue (ConfigService/GetAvailableModels, protocol doc C.7) is used
# before it is fetched again; 0 = never fetch, use the built-in table (gateway/kimi/connect/catalogue.py).
KIMIPROXY_CATALOGUE_TTL = env.int("KIMIPROXY_CATALOGUE_TTL", default=300)
if KIMIPROXY_CATALOGUE_TTL < 0:
    raise ImproperlyConfigured("KIMIPROXY_CATALOGUE_TTL must be 0 or more (seconds).")
KIMIPROXY_TOKEN_REFRESH_MARGIN = env.float("KIMIPROXY_TOKEN_REFRESH_MARGIN", default=60.0)
# Headers that change the answer (kimi-web-protocol.md C.4): the reply's language and the time zone its
# dates are in. The gateway identifies itself honestly; an operator may put their own string instead.
KIMIPROXY_LANGUAGE = env.str("KIMIPROXY_LANGUAGE", default="en-US").strip()
KIMIPROXY_TIMEZONE = env.str("KIMIPROXY_TIMEZONE", default="UTC").strip()
KIMIPROXY_USER_AGENT = env.str("KIMIPROXY_USER_AGENT", default=f"kimiproxy/{__version__}").strip()
for _name, _value in (("KIMIPROXY_LANGUAGE", KIMIPROXY_LANGUAGE), ("KIMIPROXY_USER_AGENT", KIMIPROXY_USER_AGENT)):
    if not _value or not _value.isprintable():
        raise ImproperlyConfigured(f"{_name} must be a non-empty line of printable text.")
try:
    zoneinfo.ZoneInfo(KIMIPROXY_TIMEZONE)
except (ValueError, zoneinfo.ZoneInfoNotFoundError):
    raise ImproperlyConfigured("KIMIPROXY_TIMEZONE must be an IANA time zone name such as Europe/Berlin.") from None
# C.11: refusals of a refresh that do not say the token is dead only cool the account down; this many in a
# row (spread over at least ten minutes) mark it invalid.
KIMIPROXY_REFRESH_FAILURES_BEFORE_INVALID = env.int("KIMIPROXY_REFRESH_FAILURES_BEFORE_INVALID", default=3)
if KIMIPROXY_REFRESH_FAILURES_BEFORE_INVALID < 1:
    raise ImproperlyConfigured("KIMIPROXY_REFRESH_FAILURES_BEFORE_INVALID must be at least 1.")
# ``pool_probe --loop``: seconds between passes (jittered), and how long an account may go unused before a
# pass checks it anyway (accounts/probing.py).
KIMIPROXY_PROBE_INTERVAL = env.float("KIMIPROXY_PROBE_INTERVAL", default=600.0)
if KIMIPROXY_PROBE_INTERVAL < 10:
    raise ImproperlyConfigured("KIMIPROXY_PROBE_INTERVAL must be at least 10 seconds.")

# --- Pool and API ---------------------------------------------------------------------------------------
KIMIPROXY_DEFAULT_TURN_LIMIT = env.int("KIMIPROXY_DEFAULT_TURN_LIMIT", default=30)
KIMIPROXY_DEFAULT_WINDOW_HOURS = env.float("KIMIPROXY_DEFAULT_WINDOW_HOURS", default=3.0)
KIMIPROXY_QUEUE_TIMEOUT = env.float("KIMIPROXY_QUEUE_TIMEOUT", default=30.0)
KIMIPROXY_LEASE_TIMEOUT = env.float("KIMIPROXY_LEASE_TIMEOUT", default=900.0)
KIMIPROXY_COOLDOWN_SECONDS = env.float("KIMIPROXY_COOLDOWN_SECONDS", default=30.0)
KIMIPROXY_PASSTHROUGH = env.bool("KIMIPROXY_PASSTHROUGH", default=True)
KIMIPROXY_PASSTHROUGH_RPM = env.int("KIMIPROXY_PASSTHROUGH_RPM", default=60)
KIMIPROXY_MAX_ATTEMPTS = env.int("KIMIPROXY_MAX_ATTEMPTS", default=3)
KIMIPROXY_KEEPALIVE_SECONDS = env.float("KIMIPROXY_KEEPALIVE_SECONDS", default=15.0)
# After a client tool call block closed, how long the final write reads the rest of the upstream answer.
KIMIPROXY_TOOL_DRAIN_SECONDS = env.float("KIMIPROXY_TOOL_DRAIN_SECONDS", default=5.0)
# Native multi-turn for every caller (also per key: ApiKey.native_multiturn); keeps chats between turns.
KIMIPROXY_NATIVE_MULTITURN = env.bool("KIMIPROXY_NATIVE_MULTITURN", default=False)
# Requested model names served as one of ours, matched as a prefix: "claude-opus-4=kimi-thinking,gpt-4=kimi".
KIMIPROXY_MODEL_ALIASES = parse_aliases(env.str("KIMIPROXY_MODEL_ALIASES", default=""))
KIMIPROXY_KEPT_CONVERSATION_TTL_HOURS = env.float("KIMIPROXY_KEPT_CONVERSATION_TTL_HOURS", default=24.0)
KIMIPROXY_LOG_PREVIEWS = env.bool("KIMIPROXY_LOG_PREVIEWS", default=False)
KIMIPROXY_LOG_RETENTION_DAYS = env.int("KIMIPROXY_LOG_RETENTION_DAYS", default=30)
KIMIPROXY_MAX_MESSAGES = env.int("KIMIPROXY_MAX_MESSAGES", default=500)
KIMIPROXY_MAX_PARTS = env.int("KIMIPROXY_MAX_PARTS", default=200)
KIMIPROXY_MAX_FILES = env.int("KIMIPROXY_MAX_FILES", default=10)
KIMIPROXY_SHUTDOWN_GRACE = env.float("KIMIPROXY_SHUTDOWN_GRACE", default=30.0)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["gateway.api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "gateway.api.errors.openai_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}
