"""``manage.py rotate_token_key``: re-encrypt every stored token with the newest configured key.

Put the new key first in ``KIMIPROXY_TOKEN_KEY`` (comma-separated, newest first), run this, then drop
the old key. Each row is re-encrypted under a row lock, so a concurrent token refresh is not lost.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.crypto import TokenDecryptError, token_reencrypt
from accounts.models import KimiAccount

TOKEN_FIELDS = ("refresh_token_enc", "access_token_enc")


class Command(BaseCommand):
    help = "Re-encrypt every stored token with the newest key of KIMIPROXY_TOKEN_KEY."

    def handle(self, *args: Any, **options: Any) -> None:
        done = 0
        for pk in KimiAccount.objects.order_by("pk").values_list("pk", flat=True):
            with transaction.atomic():
                account = KimiAccount.objects.select_for_update().get(pk=pk)
                try:
                    values = {field: token_reencrypt(getattr(account, field)) for field in TOKEN_FIELDS}
                except TokenDecryptError:
                    raise CommandError(
                        f"Account {account.name!r}: a token cannot be decrypted with any configured key "
                        f"({done} account(s) re-encrypted before it)."
                    ) from None
                KimiAccount.objects.filter(pk=pk).update(**values)
            done += 1
        self.stdout.write(f"re-encrypted the tokens of {done} account(s)")
