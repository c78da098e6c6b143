"""``manage.py rotate_token_key``: every token column re-encrypted with the newest key."""

from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts import crypto
from accounts.models import KimiAccount
from tests.factories import make_account, make_jwt

pytestmark = pytest.mark.django_db


def test_it_reencrypts_every_token_with_the_newest_key(settings) -> None:
    old_key, new_key = settings.KIMIPROXY_TOKEN_KEYS[0], Fernet.generate_key().decode()
    refresh, access = make_jwt(), make_jwt(typ="access")
    first = make_account(token=refresh)
    second = make_account(token=access)
    before = {a.pk: (a.refresh_token_enc, a.access_token_enc) for a in KimiAccount.objects.all()}

    settings.KIMIPROXY_TOKEN_KEYS = [new_key, old_key]
    out = io.StringIO()
    call_command("rotate_token_key", stdout=out)
    assert out.getvalue().strip() == "re-encrypted the tokens of 2 account(s)"

    settings.KIMIPROXY_TOKEN_KEYS = [new_key]  # the old key is gone: everything must still decrypt
    first.refresh_from_db()
    second.refresh_from_db()
    assert crypto.token_decrypt(first.refresh_token_enc) == refresh
    assert crypto.token_decrypt(second.access_token_enc) == access
    assert (first.refresh_token_enc, second.access_token_enc) != (before[first.pk][0], before[second.pk][1])
    assert second.refresh_token_enc == "" and first.access_token_enc == ""


def test_it_stops_with_a_clear_error_when_a_token_cannot_be_decrypted(settings) -> None:
    make_account(name="lost")
    settings.KIMIPROXY_TOKEN_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CommandError, match="Account 'lost': a token cannot be decrypted"):
        call_command("rotate_token_key", stdout=io.StringIO())
