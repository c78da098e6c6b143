"""Fetching and caching each deployment's model catalogue (kimi-web-protocol.md C.7, 2.12).

``catalogue_get(base_url=...)`` answers from a copy at most ``KIMIPROXY_CATALOGUE_TTL`` seconds old, else
asks ``ConfigService/GetAvailableModels`` of that deployment, without a token (C.7: unauthenticated
works; so one fetch serves every account of the deployment and spends no account's token). When the
refetch fails, the older copy is used (``source="stale"``); with no copy at all, the built-in table
(``source="builtin"``). A failed fetch is not retried for ``RETRY_AFTER_FAILURE`` seconds, so an
upstream outage costs the chat path one failed call per deployment and half-minute, not one per turn.

The copy lives in Django's cache (``settings.CACHES``: Redis when ``REDIS_URL`` is set, else each
process's local memory), not in a module-level dict and not in the database: it is a copy anyone may
drop (losing it costs one fetch), Redis shares it between workers, and it needs no migration. The
entry never expires in the cache itself (``timeout=None``): the TTL is judged here from the time of
the fetch, so the stale copy survives a failed refetch. The cached value is the upstream's raw JSON
plus two timestamps (plain data: no pickled class of ours, so a deploy never meets an old shape).
``KIMIPROXY_CATALOGUE_TTL=0`` turns the fetch off: the built-in table is used.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django.core.cache.backends.locmem import LocMemCache

from gateway.db.threads import db_call
from gateway.kimi.base import KimiError, ProtocolError
from gateway.kimi.connect.catalogue import BUILTIN, Catalogue, catalogue_from_answer
from gateway.kimi.connect.session import error_from_response
from gateway.kimi.origins import endpoints_for
from gateway.kimi.stream import send
from gateway.kimi.transport.http import UpstreamHTTP, client_headers, request_timeout, upstream_client

log = logging.getLogger(__name__)

MODELS_PATH = "/apiv2/kimi.gateway.config.v1.ConfigService/GetAvailableModels"
CACHE_PREFIX = "kimiproxy:catalogue:"
RETRY_AFTER_FAILURE = 30.0  # seconds (at most the TTL) before a failed fetch is tried again
FETCH_BUDGET = 10.0  # seconds: a chat waits for this fetch, so it gets less than a chat's first byte


def cache_key(base_url: str) -> str:
    return CACHE_PREFIX + base_url


async def catalogue_get(*, base_url: str, http: UpstreamHTTP | None = None, now: float | None = None) -> Catalogue:
    """The catalogue of the deployment at ``base_url``, refetched when the copy is older than the TTL.
    Never raises for an upstream failure (see the module docstring); ``now`` (epoch seconds) is injected
    by tests instead of sleeping."""
    ttl = settings.KIMIPROXY_CATALOGUE_TTL
    if ttl <= 0:
        return BUILTIN
    now = time.time() if now is None else now
    key = cache_key(base_url)
    entry: dict[str, Any] | None = await _cache_call(cache.get, key)
    if entry is not None:
        wait = ttl if entry["ok"] else min(ttl, RETRY_AFTER_FAILURE)
        if now - entry["checked_at"] < wait:
            return _from_entry(entry, fresh=entry["ok"])
    try:
        answer = await _fetch(base_url, http or upstream_client())
        catalogue = catalogue_from_answer(answer, source="upstream", fetched_at=now)
    except (KimiError, ValueError) as exc:
        log.warning("model catalogue of %s not fetched (%s); using the %s copy", base_url, exc, _fallback(entry))
        kept = entry or {"answer": None, "fetched_at": None}
        await _cache_call(cache.set, key, {**kept, "ok": False, "checked_at": now}, timeout=None)
        return _from_entry(kept, fresh=False)
    await _cache_call(
        cache.set, key, {"answer": answer, "fetched_at": now, "checked_at": now, "ok": True}, timeout=None
    )
    return catalogue


async def _cache_call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A cache call. The process's own memory cache answers at once, on the event loop (every chat turn
    reads the catalogue: a thread hop would cost more than the read); a shared one (Redis) blocks, so it
    goes through the database threads (Django's own ``cache.aget`` would queue behind every
    thread-sensitive call of the process). A cache outage (Redis down) must not fail a chat: it reads as
    no copy (the catalogue is then fetched, or the built-in table used)."""
    try:
        if isinstance(caches[DEFAULT_CACHE_ALIAS], LocMemCache):
            return fn(*args, **kwargs)
        return await db_call(fn, *args, **kwargs)
    except Exception as exc:  # the backend's own errors (redis.RedisError, ...) have no common base
        log.warning("model catalogue cache unavailable (%s)", type(exc).__name__)
        return None


def _fallback(entry: dict[str, Any] | None) -> str:
    return "stale" if entry is not None and entry["answer"] is not None else "built-in"


def _from_entry(entry: dict[str, Any], *, fresh: bool) -> Catalogue:
    if entry["answer"] is None:
        return BUILTIN
    return catalogue_from_answer(
        entry["answer"], source="upstream" if fresh else "stale", fetched_at=entry["fetched_at"]
    )


async def _fetch(base_url: str, http: UpstreamHTTP) -> dict[str, Any]:
    """``GetAvailableModels`` (doc 2.10: body ``{}``), unauthenticated (C.7)."""
    budget = min(FETCH_BUDGET, settings.KIMIPROXY_FIRST_BYTE_TIMEOUT)
    request = http.build_request(
        "POST",
        base_url + MODELS_PATH,
        json={},
        headers=client_headers() | {"connect-protocol-version": "1"},
        timeout=request_timeout(read=budget),
    )
    response = await send(http, request, stream=False, budget=budget)
    if response.status_code != 200:
        raise error_from_response(response)
    try:
        body = response.json()
    except ValueError:
        raise ProtocolError("the catalogue answer is not JSON") from None
    if not isinstance(body, dict):
        raise ProtocolError("the catalogue answer is not a JSON object")
    return body


async def catalogues_for(*, origins: Iterable[str], http: UpstreamHTTP | None = None) -> dict[str, Catalogue]:
    """The Connect catalogue of each origin (``kimi.com`` / ``kimi.ai``, C.5), in the order given."""
    found: dict[str, Catalogue] = {}
    for origin in dict.fromkeys(origins):
        base = endpoints_for(protocol="connect", origin=origin).base
        found[origin] = await catalogue_get(base_url=base, http=http)
    return found


async def catalogue_model_ids(*, origins: Iterable[str], http: UpstreamHTTP | None = None) -> list[str]:
    """Every model id of the given origins' catalogues, each once, in order of first appearance (the
    origins in the order given); the built-in table's ids when no origin is given."""
    catalogues = (await catalogues_for(origins=origins, http=http)).values()
    ids = [model_id for c in catalogues for model_id in c.model_ids()] if catalogues else list(BUILTIN.model_ids())
    return list(dict.fromkeys(ids))
