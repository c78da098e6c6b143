"""ASGI entry point: ``kimiproxy.asgi:application`` (gunicorn -k uvicorn_worker.UvicornWorker)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kimiproxy.settings")

application = get_asgi_application()
