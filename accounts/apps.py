from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate


def _install_pool_function(*, using: str, **kwargs: Any) -> None:
    """The reservation function of this code version, on PostgreSQL (accounts/pool/README.md)."""
    from accounts.pool import pg  # noqa: PLC0415  (models are not ready when this module is imported)

    pg.install(connections[using])


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Kimi accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Sent by every `migrate` (the test database's too), after this app's migrations ran.
        post_migrate.connect(_install_pool_function, sender=self, dispatch_uid="accounts.pool.install")
