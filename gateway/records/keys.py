"""Gateway API keys: creation (the key is shown once), authentication by hash, revocation, allow-list.

Only ``sha256(key)`` and a short visible prefix are stored. Looking a key up by the hash of what the
client sent is timing-safe: the index compares hashes, and learning a hash prefix tells an attacker
nothing about a key. The per-minute request limit (``rpm_limit``) is enforced by the API views.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from gateway.models import ApiKey
from gateway.openai.model_names import parse_model

KEY_PREFIX = "sk-kp-"
KEY_RANDOM_CHARS = 40  # secrets.token_urlsafe(30) gives 40 characters (240 bits)
KEY_LENGTH = len(KEY_PREFIX) + KEY_RANDOM_CHARS
VISIBLE_PREFIX_CHARS = 12  # "sk-kp-" and 6 random characters: enough to tell keys apart in a list
LAST_USED_RESOLUTION = timedelta(minutes=1)  # at most one write per key per minute


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _clean_models(models: Iterable[str] | None) -> list[str]:
    return sorted({m.strip() for m in models or () if m and m.strip()})


def api_key_create(
    *,
    name: str,
    rpm: int | None = None,
    allowed_models: Iterable[str] | None = None,
    max_concurrent: int | None = None,
    turns_per_day: int | None = None,
    reasoning_format: str | None = None,
    repair_turns: int = 0,
    local_probes: bool = True,
    native_multiturn: bool = False,
) -> tuple[ApiKey, str]:
    """Create a key; return the row and the full key, which is never available again."""
    name = (name or "").strip()
    if not name:
        raise ValidationError("The key name is empty.")
    if rpm is not None and rpm < 1:
        raise ValidationError("The requests-per-minute limit must be at least 1 (omit it for no limit).")
    if max_concurrent is not None and max_concurrent < 1:
        raise ValidationError("The concurrency limit must be at least 1 (omit it for no limit).")
    _check_turns_per_day(turns_per_day)
    _check_repair_turns(repair_turns)
    if ApiKey.objects.filter(name=name).exists():
        raise ValidationError(f"A key named {name!r} already exists.")
    raw = KEY_PREFIX + secrets.token_urlsafe(30)
    extra = {"reasoning_format": reasoning_format} if reasoning_format else {}
    try:
        with transaction.atomic():
            key = ApiKey.objects.create(
                name=name,
                prefix=raw[:VISIBLE_PREFIX_CHARS],
                key_hash=_hash(raw),
                rpm_limit=rpm,
                max_concurrent=max_concurrent,
                turns_per_day=turns_per_day,
                repair_turns=repair_turns,
                allowed_models=_clean_models(allowed_models),
                local_probes=local_probes,
                native_multiturn=native_multiturn,
                **extra,
            )
    except IntegrityError:
        raise ValidationError(f"A key named {name!r} already exists.") from None
    return key, raw


# More than a couple of repairs of one answer only spends turns: the model keeps failing the same way.
MAX_REPAIR_TURNS = 3


def _check_repair_turns(repair_turns: int) -> None:
    if not 0 <= repair_turns <= MAX_REPAIR_TURNS:
        raise ValidationError(f"Repair turns must be between 0 and {MAX_REPAIR_TURNS}.")


def api_key_set_repair_turns(*, key: ApiKey, repair_turns: int) -> None:
    """Set how many extra upstream turns the key's collected answers may spend on a repair
    (gateway/chat/repair.py); 0 turns repairs off. Applies from the key's next request."""
    _check_repair_turns(repair_turns)
    ApiKey.objects.filter(pk=key.pk).update(repair_turns=repair_turns)
    key.refresh_from_db()


def _check_turns_per_day(turns_per_day: int | None) -> None:
    if turns_per_day is not None and turns_per_day < 1:
        raise ValidationError("The turns-per-day budget must be at least 1 (omit it for no limit).")


def api_key_set_turns_per_day(*, key: ApiKey, turns_per_day: int | None) -> None:
    """Set (or with None remove) the key's budget of upstream turns per rolling 24 hours; it applies
    from the key's next request (``gateway.records.logs.request_log_accept``)."""
    _check_turns_per_day(turns_per_day)
    ApiKey.objects.filter(pk=key.pk).update(turns_per_day=turns_per_day)
    key.refresh_from_db()


def api_key_hash_of(*, raw: str) -> str | None:
    """The stored hash to look ``raw`` up by, or None when it is not shaped like a key (no lookup)."""
    raw = (raw or "").strip()
    if not raw.startswith(KEY_PREFIX) or len(raw) != KEY_LENGTH:
        return None
    return _hash(raw)


def api_key_last_used_stale(*, last_used_at: datetime | None, now: datetime) -> bool:
    """Whether ``last_used_at`` is due for a write (at most one a minute)."""
    return last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION


def api_key_authenticate(*, raw: str) -> ApiKey | None:
    """The active key matching ``raw``, or None (unknown, malformed or revoked).

    On PostgreSQL, API requests do the same in SQL together with their log row (gateway/db/accept_sql.py).
    """
    key_hash = api_key_hash_of(raw=raw)
    if key_hash is None:
        return None
    key = ApiKey.objects.filter(key_hash=key_hash, revoked_at__isnull=True).first()
    if key is None:
        return None
    now = timezone.now()
    if api_key_last_used_stale(last_used_at=key.last_used_at, now=now):
        # Conditional update: concurrent requests in the same minute write once between them.
        stale = Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_RESOLUTION)
        ApiKey.objects.filter(stale, pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


def api_key_revoke(*, key: ApiKey) -> bool:
    """Revoke a key; False when it was already revoked."""
    now = timezone.now()
    changed = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=now)
    key.refresh_from_db(fields=["revoked_at"])
    return changed == 1


def api_key_model_allowed(*, key: ApiKey, model: str) -> bool:
    """An empty allow-list allows every model; otherwise the model must be listed, by its exact name or
    by one that means the same (``kimi-thinking-search`` matches an entry ``kimi-search-thinking``)."""
    if not key.allowed_models or model in key.allowed_models:
        return True
    wanted = parse_model(model).canonical
    return any(parse_model(allowed).canonical == wanted for allowed in key.allowed_models)


def api_key_set_native_multiturn(*, key: ApiKey, enabled: bool) -> None:
    """Turn native multi-turn on or off for a key (gateway/chat/native.py); kept chats stay until their TTL."""
    key.native_multiturn = enabled
    key.save(update_fields=["native_multiturn"])
