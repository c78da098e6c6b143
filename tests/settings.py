"""Test settings: the real settings module, with the environment a test run needs.

Only environment defaults are set here (an explicit environment, e.g. CI's DATABASE_URL, wins), so the
tests exercise the same settings code production does.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-0123456789")
os.environ.setdefault("KIMIPROXY_TOKEN_KEY", "dGVzdC10b2tlbi1rZXktMzItYnl0ZXMtbG9uZy0wMTI=")
os.environ.setdefault("KIMIPROXY_SECURE_COOKIES", "false")
os.environ.setdefault("KIMIPROXY_DATA_DIR", os.path.join(os.path.dirname(__file__), "..", "data", "test"))

from kimiproxy.settings import *  # noqa: E402,F403

# A file-backed SQLite test database: the in-memory one uses shared-cache table locks, which ignore the
# busy timeout and fail when the live test server's threads write while the test thread reads.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"]["NAME"] = str(DATA_DIR / f"test-{os.getpid()}.sqlite3")  # noqa: F405
