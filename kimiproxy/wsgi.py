"""WSGI entry point (admin-only deployments); the API needs ASGI for streaming."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kimiproxy.settings")

application = get_wsgi_application()
