"""Typed shapes of what the api answers (its JSON, keys as the api spells
them) and of what the caller passes in. Answers stay plain dicts, so that a
field the api adds later is there too."""

from __future__ import annotations

from datetime import datetime
from typing import List, Optional, TypedDict, Union

Timestamp = Union[datetime, str]
"""An instant: an aware ``datetime`` or an RFC 3339 string."""


class TokenUsage(TypedDict):
    """Tokens of one model call by class, as ``providers`` map them."""

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int


class Event(TypedDict, total=False):
    """One event for ``record_batch``: the keyword arguments of ``record``."""

    tenant: str
    feature: str
    tokens: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    id: str
    timestamp: Timestamp
    reservation_id: str


class Limit(TypedDict, total=False):
    """One limit that applies to a tenant (reservations and the check)."""

    kind: str  # quota | budget | tokensPerMinute | requestsPerMinute
    limit: Union[int, str]
    used: Union[int, str]
    reserved: Union[int, str]
    remaining: Union[int, str]
    resetAt: str


class Reservation(TypedDict, total=False):
    """A granted reservation (``POST /api/reservations`` → 201)."""

    reservationId: str
    allowed: bool
    expiresAt: str
    limits: List[Limit]


class Check(TypedDict, total=False):
    """``GET /api/usage/{tenant}/check``."""

    tenant: str
    allowed: bool
    remainingTokens: int
    quotaPercent: float
    remainingBudget: str
    asOf: str
    lagMs: int
    limits: List[Limit]
    blockedBy: str


class TokenTotals(TypedDict, total=False):
    """Tokens by class and their cost, in a usage answer."""

    inputTokens: int
    outputTokens: int
    cacheReadTokens: int
    cacheWriteTokens: int
    cost: str
    unpricedTokens: int


class FeatureUsage(TokenTotals, total=False):
    feature: str
    totalTokens: int


class Usage(TypedDict, total=False):
    """``GET /api/usage/{tenant}``: the current billing period."""

    tenant: str
    tenantName: str
    totalTokens: int
    monthlyQuota: int
    quotaPercent: float
    periodStart: str
    periodEnd: str
    cost: str
    currency: str
    unpricedTokens: int
    budget: str
    budgetPercent: float
    byFeature: List[FeatureUsage]
    asOf: str
    lastCountedAt: Optional[str]


class Point(TokenTotals, total=False):
    start: str
    totalTokens: int
    eventCount: int


class Timeseries(TypedDict, total=False):
    """``GET /api/usage/{tenant}/timeseries``: every bucket, empty ones as 0."""

    tenant: str
    granularity: str
    tz: str
    # "from" is a Python keyword: read it as series["from"].
    to: str
    feature: str
    points: List[Point]


class Tenant(TypedDict, total=False):
    """A tenant's configuration, as saved (``PUT /api/tenants/{tenant}``)."""

    id: str
    name: str
    monthlyQuota: int
    billingDay: int
    timezone: str
    alertThresholds: List[int]
    monthlyBudget: Optional[str]
    tokensPerMinute: Optional[int]
    requestsPerMinute: Optional[int]
    createdAt: str
    updatedAt: str
