"""The errors a FlagMeter client raises: one base class, one type per way to fail."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

WireEvent = Dict[str, Any]


class FlagMeterError(Exception):
    """Base class of every error raised by this package."""


class ApiError(FlagMeterError):
    """The api refused the request with a status that a retry cannot change
    (a 4xx other than 429, or a 5xx other than 502/503/504).

    ``error`` and ``details`` are the server's own words (its JSON body
    ``{"error": ..., "details": ...}``).
    """

    def __init__(self, status: int, error: str, details: Any = None) -> None:
        self.status = status
        self.error = error
        self.details = details
        text = f"{status} {error}"
        if details is not None:
            text += f": {details}"
        super().__init__(text)


class DeadlineExceeded(FlagMeterError):
    """The request kept failing in a retryable way (connection error,
    timeout, 429, 502, 503, 504) until its deadline passed.

    ``last_error`` is the last failure seen: an :class:`ApiError` for an
    answer, or the transport's exception.
    """

    def __init__(self, message: str, last_error: BaseException) -> None:
        self.last_error = last_error
        super().__init__(f"{message}; last error: {last_error}")


class QueueFull(FlagMeterError):
    """``record`` waited its ``enqueue_timeout`` for room in the bounded
    queue and found none: the api is slower than the caller (or down)."""


class FlushError(FlagMeterError):
    """Queued events that could not be delivered since the last flush.

    ``failures`` holds one ``(error, events)`` pair per refused batch; the
    events are the wire bodies (with their ids), ready to be sent again.
    """

    def __init__(self, failures: Sequence[Tuple[BaseException, List[WireEvent]]]) -> None:
        self.failures = list(failures)
        count = sum(len(events) for _, events in self.failures)
        first = self.failures[0][0] if self.failures else None
        super().__init__(f"{count} event(s) could not be delivered; first error: {first}")

    @property
    def events(self) -> List[WireEvent]:
        return [event for _, events in self.failures for event in events]


class LimitExceeded(FlagMeterError):
    """A reservation (or, on an api without reservations, the check) was
    refused.

    ``blocked_by`` is the kind of limit that refused (``quota``, ``budget``,
    ``tokensPerMinute`` or ``requestsPerMinute``), ``reset_at`` when it has
    room again (RFC 3339, or ``None`` when the api did not say),
    ``retry_after`` the api's ``Retry-After`` in seconds (if any), and
    ``limits`` every limit that applies, as the api reported them.
    """

    def __init__(
        self,
        tenant: str,
        blocked_by: str,
        reset_at: Optional[str],
        limits: Optional[List[WireEvent]] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        self.tenant = tenant
        self.blocked_by = blocked_by
        self.reset_at = reset_at
        self.limits = limits or []
        self.retry_after = retry_after
        when = f"; resets at {reset_at}" if reset_at else ""
        super().__init__(f"tenant {tenant!r}: {blocked_by} limit reached{when}")
