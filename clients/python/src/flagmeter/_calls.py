"""What both clients are, once: their settings, and every call to the api as
a flow (see ``_flow``): the retries and their back-off, the batches halved
around a refused event, the reservation that falls back on the check. The
clients only run the flows and wait on their queue."""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Dict, Generic, Iterable, List, Mapping, Optional, Tuple, TypeVar, Union, cast
from urllib.parse import quote

import httpx

from . import _core
from ._core import MAX_BATCH, RetryPolicy, Stats, WireEvent
from ._flow import RETRYABLE_ERRORS, Flow, Send, Sleep
from ._queue import Queue
from .errors import ApiError, DeadlineExceeded, FlagMeterError, FlushError, LimitExceeded, QueueFull
from .providers import usage_from_response
from .types import Check, Event, Reservation, Tenant, Timeseries, Timestamp, Usage

log = logging.getLogger("flagmeter")

OnError = Callable[[BaseException, List[WireEvent]], None]
Failures = List[Tuple[BaseException, List[WireEvent]]]


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
"""Default of ``put_tenant``'s nullable settings: leave the setting as it is
(``None`` removes it)."""

_TENANT_SETTINGS = {
    "name": "name",
    "monthly_quota": "monthlyQuota",
    "billing_day": "billingDay",
    "timezone": "timezone",
    "alert_thresholds": "alertThresholds",
    "monthly_budget": "monthlyBudget",
    "tokens_per_minute": "tokensPerMinute",
    "requests_per_minute": "requestsPerMinute",
}
_NULLABLE_SETTINGS = {"monthly_budget", "tokens_per_minute", "requests_per_minute"}


def _path(value: str) -> str:
    return quote(value, safe="")


Transport = TypeVar("Transport")


class Calls(Generic[Transport]):
    """Configuration, request flows and failure reports common to both
    clients; ``Transport`` is the kind of httpx transport a client takes."""

    def __init__(
        self,
        base_url: Optional[str] = None,
        api_key: Optional[str] = None,
        *,
        timeout: float = 10.0,
        retry: Optional[RetryPolicy] = None,
        batch_size: int = MAX_BATCH,
        flush_interval: float = 1.0,
        max_queue: int = 100_000,
        enqueue_timeout: float = 5.0,
        on_error: Optional[OnError] = None,
        transport: Optional[Transport] = None,
    ) -> None:
        base_url = base_url or os.environ.get("FLAGMETER_URL")
        if not base_url:
            raise ValueError("base_url is required (or set FLAGMETER_URL)")
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be from 1 to {MAX_BATCH}")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key if api_key is not None else os.environ.get("FLAGMETER_API_KEY")
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._enqueue_timeout = enqueue_timeout
        self._on_error = on_error
        self.stats = Stats()
        self._queue = Queue(self.stats, batch_size, flush_interval, max_queue)
        # Whether the api has the reservation routes; None until asked.
        self._reservations: Optional[bool] = None
        # Batches given up on since the last flush, for flush() to raise.
        self._failures: Failures = []
        self._connect(transport)

    def _connect(self, transport: Optional[Transport]) -> None:
        """Opens the client's connections, its queue's condition, its exit hook."""
        raise NotImplementedError

    def _headers(self) -> Dict[str, str]:
        headers = {"user-agent": "flagmeter-python/0.1.0"}
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        return headers

    # -- the sender's outcomes -------------------------------------------------

    def _settle(self, batch: List[WireEvent], failures: Failures) -> None:
        """A batch the sender is done with. What it gave up on is kept for
        flush() to raise, and handed to ``on_error`` (or logged), never
        dropped unseen. Called with the queue's lock held."""
        self._failures.extend(failures)
        try:
            for error, events in failures:
                if self._on_error is not None:
                    self._on_error(error, events)
                else:
                    log.error("flagmeter: %d event(s) not delivered: %s", len(events), error)
        except Exception:  # on_error raised: the batch is still done
            log.exception("flagmeter: on_error raised")
        self._queue.done(batch)

    def _raise_failures(self) -> None:
        failures, self._failures = self._failures, []
        if failures:
            raise FlushError(failures)

    def _queue_full(self) -> QueueFull:
        return QueueFull(f"{len(self._queue.pending)} events queued; none sent for {self._enqueue_timeout}s")

    def _check_open(self) -> None:
        if self._queue.closed:
            raise RuntimeError("the client is closed")

    # -- requests --------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Optional[Mapping[str, Any]] = None,
        weight: int = 0,
        refusal_ok: bool = False,
    ) -> Flow[httpx.Response]:
        """One request, retried until it succeeds, fails for good, or the
        deadline passes. ``weight`` is how many events a retry re-sends (for
        the counters); ``refusal_ok`` returns a reservation's refusal
        (429 ``allowed: false``) instead of retrying it."""
        policy = self._retry
        deadline = time.monotonic() + policy.deadline
        attempt = 0
        while True:
            timeout = max(0.001, min(self._timeout, deadline - time.monotonic()))
            retry_after: Optional[float] = None
            try:
                response = yield Send(method, path, json, params, timeout)
            except RETRYABLE_ERRORS as exc:
                failure: BaseException = exc
            else:
                status = response.status_code
                if status < 400 or (refusal_ok and _core.is_refusal(status, response.content)):
                    return cast(httpx.Response, response)
                failure = _core.api_error(status, response.content)
                if status not in _core.RETRY_STATUSES:
                    raise failure
                retry_after = _core.parse_retry_after(response.headers.get("retry-after"))
            delay = policy.backoff(attempt, retry_after)
            if time.monotonic() + delay >= deadline:
                raise DeadlineExceeded(f"{method} {path}: gave up after {attempt + 1} attempt(s)", failure) from failure
            self.stats.add(retried=weight)
            yield Sleep(delay)
            attempt += 1

    def _json(self, method: str, path: str, **options: Any) -> Flow[Any]:
        return (yield from self._request(method, path, **options)).json()

    # -- events ----------------------------------------------------------------

    def _send_batch(self, events: List[WireEvent], failures: Failures) -> Flow[List[str]]:
        """Sends events (at most MAX_BATCH), counts them, and returns the ids
        sent; what is given up on goes to ``failures``. A batch the api
        refuses as invalid (400) or too large (413) is halved until the
        refused events stand alone, so that one bad event does not take
        its neighbours down with it; the ids make resending the rest safe."""
        try:
            yield from self._request("POST", "/api/events/batch", json={"events": events}, weight=len(events))
        except ApiError as err:
            if err.status in (400, 413) and len(events) > 1:
                half = len(events) // 2
                first = yield from self._send_batch(events[:half], failures)
                return first + (yield from self._send_batch(events[half:], failures))
            failures.append((err, events))
        except FlagMeterError as err:
            failures.append((err, events))
        else:
            self.stats.add(sent=len(events))
            return [event["id"] for event in events]
        self.stats.add(failed=len(events))
        return []

    def _send_all(self, events: List[WireEvent], failures: Failures) -> Flow[List[str]]:
        """Sends events in chunks of MAX_BATCH, every chunk tried."""
        ids: List[str] = []
        for start in range(0, len(events), MAX_BATCH):
            ids += yield from self._send_batch(events[start : start + MAX_BATCH], failures)
        return ids

    def _record_batch(self, events: Iterable[Union[Event, Mapping[str, Any]]]) -> Flow[List[str]]:
        bodies = [_core.build_event(**event) for event in events]
        failures: Failures = []
        ids = yield from self._send_all(bodies, failures)
        if failures:
            raise FlushError(failures)
        return ids

    def _void(self, tenant: str, id: str) -> Flow[None]:
        yield from self._request("POST", "/api/events/void", json={"tenant": tenant, "id": id})

    # -- reads -----------------------------------------------------------------

    def _usage(self, tenant: str) -> Flow[Usage]:
        return cast(Usage, (yield from self._json("GET", f"/api/usage/{_path(tenant)}")))

    def _timeseries(
        self,
        tenant: str,
        granularity: str,
        from_: Optional[Timestamp],
        to: Optional[Timestamp],
        feature: Optional[str],
        tz: Optional[str],
    ) -> Flow[Timeseries]:
        params = {"granularity": granularity}
        if from_ is not None:
            params["from"] = _core.format_time(from_, "from_")
        if to is not None:
            params["to"] = _core.format_time(to, "to")
        if feature is not None:
            params["feature"] = feature
        if tz is not None:
            params["tz"] = tz
        path = f"/api/usage/{_path(tenant)}/timeseries"
        return cast(Timeseries, (yield from self._json("GET", path, params=params)))

    def _check(self, tenant: str, tokens: int) -> Flow[Check]:
        path = f"/api/usage/{_path(tenant)}/check"
        return cast(Check, (yield from self._json("GET", path, params={"tokens": tokens})))

    # -- reservations ----------------------------------------------------------

    def _reserve(self, tenant: str, tokens: int, **options: Any) -> Flow[Reservation]:
        body = _core.reservation_body(tenant, tokens, **options)
        response = yield from self._request("POST", "/api/reservations", json=body, refusal_ok=True)
        if response.status_code == 429:
            retry_after = _core.parse_retry_after(response.headers.get("retry-after"))
            raise _core.limit_exceeded(tenant, response.json(), retry_after)
        return cast(Reservation, response.json())

    def _release(self, reservation_id: str) -> Flow[None]:
        yield from self._request("DELETE", f"/api/reservations/{_path(reservation_id)}")

    def _refusal_from_check(self, tenant: str, check: Mapping[str, Any]) -> Flow[LimitExceeded]:
        period_end = None
        if _core.names_no_limit(check):
            try:
                period_end = (yield from self._usage(tenant)).get("periodEnd")
            except FlagMeterError:
                pass
        return _core.limit_exceeded(tenant, check, None, period_end)

    # -- tenants ---------------------------------------------------------------

    def _put_tenant(self, tenant: str, **settings: Any) -> Flow[Tenant]:
        body = {
            _TENANT_SETTINGS[key]: value
            for key, value in settings.items()
            if value is not UNSET and (value is not None or key in _NULLABLE_SETTINGS)
        }
        return cast(Tenant, (yield from self._json("PUT", f"/api/tenants/{_path(tenant)}", json=body)))


C = TypeVar("C", bound="Calls[Any]")


class CallState(Generic[C]):
    """One model call's reservation and event, and the flows that open and
    close it (see :meth:`flagmeter.Client.call`)."""

    def __init__(self, client: C, tenant: str, feature: str, estimate_tokens: int, ttl_seconds: Optional[int]) -> None:
        self.client = client
        self.tenant = tenant
        self.feature = feature
        self.estimate_tokens = estimate_tokens
        self.ttl_seconds = ttl_seconds
        self.reservation: Optional[Reservation] = None
        self.event_id: Optional[str] = None

    @property
    def reservation_id(self) -> Optional[str]:
        return self.reservation.get("reservationId") if self.reservation else None

    def _open(self) -> Flow[None]:
        """Reserves the estimate; on an api without reservations, the
        (advisory) check instead."""
        client = self.client
        if client._reservations is not False:
            try:
                self.reservation = yield from client._reserve(
                    self.tenant, self.estimate_tokens, feature=self.feature, ttl_seconds=self.ttl_seconds
                )
                client._reservations = True
                return
            except ApiError as err:
                if not (client._reservations is None and _core.route_missing(err)):
                    raise
                client._reservations = False
        check = yield from client._check(self.tenant, self.estimate_tokens)
        if not check.get("allowed", False):
            raise (yield from client._refusal_from_check(self.tenant, check))

    def _event(
        self, response: Any, tokens: Optional[int], id: Optional[str], timestamp: Optional[Timestamp], **classes: Any
    ) -> Dict[str, Any]:
        """The arguments of the client's ``record`` for this call's usage:
        from a provider's ``response``, or from the token ``classes``."""
        if self.event_id is not None:
            raise RuntimeError("this call was already recorded")
        if response is not None:
            classes = dict(usage_from_response(response))
        return dict(
            tenant=self.tenant,
            feature=self.feature,
            tokens=tokens,
            id=id,
            timestamp=timestamp,
            reservation_id=self.reservation_id,
            **classes,
        )

    def _close(self) -> Flow[None]:
        """Releases a reservation the call did not record against."""
        if self.reservation_id is None or self.event_id is not None:
            return
        try:
            yield from self.client._release(self.reservation_id)
        except FlagMeterError as err:
            # Not fatal: an unreleased reservation expires at its TTL.
            log.warning("flagmeter: could not release reservation %s: %s", self.reservation_id, err)
