"""What the sync and async clients share, without any I/O: event bodies,
ids, the retry policy, reading the api's answers, and the counters."""

from __future__ import annotations

import email.utils
import json
import os
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, List, Mapping, Optional

from .errors import ApiError, LimitExceeded
from .types import Timestamp

WireEvent = Dict[str, Any]
"""An event as sent: camelCase keys, its id fixed, absent fields left out."""

MAX_BATCH = 1000
"""The api takes at most this many events in one batch."""

RETRY_STATUSES = frozenset({429, 502, 503, 504})
"""Answers that say "not now" rather than "no": retried with back-off.
502 and 504 are what a proxy in front of the api says when it is away."""

_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_PRINTABLE = re.compile(r"[\x21-\x7e]+")  # feature: no spaces
_PRINTABLE_ID = re.compile(r"[\x20-\x7e]+")  # id: spaces allowed
_MAX_TOKENS = 1_000_000_000


def uuid7() -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits.

    Time-ordered, so the api's ledger index stays compact; random enough
    that two clients never draw the same one."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    rand_a = rand >> 68  # 12 bits
    rand_b = rand & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return str(uuid.UUID(int=value))


def format_time(value: Timestamp, name: str = "timestamp") -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware (a naive datetime is ambiguous)")
        return value.isoformat()
    return value


def _count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not minimum <= value <= _MAX_TOKENS:
        raise ValueError(f"{name} must be from {minimum} to {_MAX_TOKENS:,}, not {value}")
    return value


_CLASSES = {
    "input_tokens": "inputTokens",
    "output_tokens": "outputTokens",
    "cache_read_tokens": "cacheReadTokens",
    "cache_write_tokens": "cacheWriteTokens",
}
"""The token classes: their argument names, and their names on the wire."""

_RESERVATION_OPTIONS = {"feature": "feature", **_CLASSES, "ttl_seconds": "ttlSeconds"}


def _on_the_wire(names: Mapping[str, str], values: Mapping[str, Any]) -> Dict[str, Any]:
    """The values given (not None) under their wire names; a name not in
    ``names`` is the caller's mistake, as an unknown keyword argument is."""
    unknown = set(values) - set(names)
    if unknown:
        raise TypeError(f"unexpected argument(s): {', '.join(sorted(unknown))}")
    return {names[name]: value for name, value in values.items() if value is not None}


def build_event(tenant: str, feature: str, tokens: Optional[int] = None, **fields: Any) -> WireEvent:
    """The wire body of one event (the arguments of ``record``: the token
    classes, ``id``, ``timestamp`` and ``reservation_id`` in ``fields``),
    its id fixed now (before any send), so that every retry of it is the
    same event and counts once.

    Checks the api's rules that are cheap to check here, so that a bad
    event fails at the call site instead of refusing a whole batch later.
    Absent optional fields are left out, not sent as null."""
    id = fields.pop("id", None)
    timestamp = fields.pop("timestamp", None)
    reservation_id = fields.pop("reservation_id", None)
    if not isinstance(tenant, str) or not _TENANT.fullmatch(tenant):
        raise ValueError(f"tenant must be 1-64 of [A-Za-z0-9._-] starting alphanumeric: {tenant!r}")
    if not isinstance(feature, str) or len(feature) > 128 or not _PRINTABLE.fullmatch(feature):
        raise ValueError(f"feature must be 1-128 printable ASCII without spaces: {feature!r}")
    body: WireEvent = {"id": id if id is not None else uuid7(), "tenant": tenant, "feature": feature}
    if not isinstance(body["id"], str) or len(body["id"]) > 128 or not _PRINTABLE_ID.fullmatch(body["id"]):
        raise ValueError(f"id must be 1-128 printable ASCII: {id!r}")
    given = _on_the_wire(_CLASSES, fields)
    total = sum(_count(name, value, 0) for name, value in fields.items() if value is not None)
    body.update(given)
    if tokens is not None:
        _count("tokens", tokens, 1)
        if given and tokens != total:
            raise ValueError(f"tokens ({tokens}) must equal the sum of the token classes ({total})")
        body["tokens"] = tokens
    elif not given:
        raise ValueError("an event needs tokens, or token classes (input_tokens, ...)")
    elif total < 1:
        raise ValueError("an event's token classes must add up to at least 1")
    if timestamp is not None:
        body["timestamp"] = format_time(timestamp)
    if reservation_id is not None:
        body["reservationId"] = reservation_id
    return body


def reservation_body(tenant: str, tokens: int, *, id: Optional[str] = None, **options: Any) -> Dict[str, Any]:
    """The body of ``POST /api/reservations`` (the arguments of ``reserve``,
    its optional ones in ``options``); the id (the api's idempotency key)
    is fixed here so that a retry gets the same reservation back rather
    than holding room twice."""
    body: Dict[str, Any] = {"tenant": tenant, "tokens": _count("tokens", tokens, 1), "id": id or uuid7()}
    body.update(_on_the_wire(_RESERVATION_OPTIONS, options))
    return body


@dataclass(frozen=True)
class RetryPolicy:
    """Jittered exponential back-off, bounded by a deadline.

    Attempt ``n`` (from 0) waits a uniform draw from 0 to
    ``min(max_backoff, initial_backoff * 2**n)`` ("full jitter": many
    clients that failed together do not retry together). A ``Retry-After``
    from the api is a floor: the wait is at least that long. A retry that
    could not start before the deadline (``deadline`` seconds after the
    first attempt) is not made, and the request fails."""

    deadline: float = 30.0
    initial_backoff: float = 0.1
    max_backoff: float = 5.0

    def backoff(self, attempt: int, retry_after: Optional[float]) -> float:
        jitter = random.uniform(0, min(self.max_backoff, self.initial_backoff * 2**attempt))
        return jitter if retry_after is None else retry_after + jitter


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def decode(content: bytes) -> Any:
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return None


def api_error(status: int, content: bytes) -> ApiError:
    """The api's ``{error, details}``, or the raw text when the body is not
    that (a proxy's page, say)."""
    body = decode(content)
    if isinstance(body, dict) and "error" in body:
        return ApiError(status, str(body["error"]), body.get("details"))
    text = content.decode("utf-8", "replace").strip()[:500]
    return ApiError(status, text or f"HTTP {status}")


def is_refusal(status: int, content: bytes) -> bool:
    """A reservation's 429 that is a decision (``allowed: false``), not
    the key's rate limit: retrying it would be wrong."""
    body = decode(content) if status == 429 else None
    return isinstance(body, dict) and body.get("allowed") is False


def route_missing(err: ApiError) -> bool:
    """A 404 that says the route is not there (an api from before
    reservations answers ``{"error": "not found"}``), rather than the
    api's refusal of this request."""
    return err.status in (404, 405) and err.error.lower() in ("not found", "method not allowed")


def limit_exceeded(
    tenant: str, body: Mapping[str, Any], retry_after: Optional[float], reset_at: Optional[str] = None
) -> LimitExceeded:
    """Builds the refusal from a reservation's 429 or a check's answer;
    ``reset_at`` stands in when the answer names no limit (an api from
    before limits: the quota and the budget reset at the period's end)."""
    limits: List[Dict[str, Any]] = list(body.get("limits") or [])
    blocked_by = body.get("blockedBy") or "quota"
    named = next((lim.get("resetAt") for lim in limits if lim.get("kind") == blocked_by), None)
    return LimitExceeded(tenant, blocked_by, named or reset_at, limits, retry_after)


def names_no_limit(check: Mapping[str, Any]) -> bool:
    return not check.get("limits")


class Stats:
    """Counters of events: ``sent`` (accepted by the api), ``retried``
    (re-sent after a retryable failure; one event re-sent twice counts
    twice), ``failed`` (given up on and reported), ``queued`` (waiting)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent = 0
        self.retried = 0
        self.failed = 0
        self.queued = 0

    def add(self, *, sent: int = 0, retried: int = 0, failed: int = 0) -> None:
        with self._lock:
            self.sent += sent
            self.retried += retried
            self.failed += failed

    def as_dict(self) -> Dict[str, int]:
        with self._lock:
            return {"sent": self.sent, "retried": self.retried, "failed": self.failed, "queued": self.queued}

    def __repr__(self) -> str:
        return f"Stats({self.as_dict()})"
