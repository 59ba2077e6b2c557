"""The synchronous client: typed calls, retries, and a background thread
that sends queued events in batches."""

from __future__ import annotations

import atexit
import collections
import functools
import logging
import os
import threading
import time
import weakref
from types import TracebackType
from typing import Any, Callable, Deque, Dict, Iterable, List, Mapping, Optional, Tuple, Type, Union, cast
from urllib.parse import quote

import httpx

from . import _core
from ._core import MAX_BATCH, RetryPolicy, Stats, WireEvent
from .errors import ApiError, DeadlineExceeded, FlagMeterError, FlushError, LimitExceeded, QueueFull
from .providers import usage_from_response
from .types import Check, Event, Reservation, Tenant, Timeseries, Timestamp, Usage

log = logging.getLogger("flagmeter")

# Failures worth another attempt: the request may not have arrived, or its
# answer was lost. Not LocalProtocolError or UnsupportedProtocol: those are
# this side's mistakes and would fail the same way again.
RETRYABLE_ERRORS: Tuple[Type[BaseException], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)

OnError = Callable[[BaseException, List[WireEvent]], None]


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
"""Default of ``put_tenant``'s nullable settings: leave the setting as it is
(``None`` removes it)."""


def _path(value: str) -> str:
    return quote(value, safe="")


class _Base:
    """Configuration and request bodies common to both clients."""

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
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_queue = max_queue
        self._enqueue_timeout = enqueue_timeout
        self._on_error = on_error
        self.stats = Stats()
        # Whether the api has the reservation routes; None until asked.
        self._reservations: Optional[bool] = None
        # Batches given up on since the last flush, for flush() to raise.
        self._failures: List[Tuple[BaseException, List[WireEvent]]] = []

    def _headers(self) -> Dict[str, str]:
        headers = {"user-agent": "flagmeter-python/0.1.0"}
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        return headers

    def _report(self, failures: List[Tuple[BaseException, List[WireEvent]]]) -> None:
        """Batches the sender gave up on: kept for flush() to raise, and
        handed to ``on_error`` (or logged), never dropped unseen. Called
        with the queue's lock held."""
        self._failures.extend(failures)
        for error, events in failures:
            if self._on_error is not None:
                self._on_error(error, events)
            else:
                log.error("flagmeter: %d event(s) not delivered: %s", len(events), error)

    def _take_failures(self) -> Optional[FlushError]:
        failures, self._failures = self._failures, []
        return FlushError(failures) if failures else None

    @staticmethod
    def _timeseries_params(
        granularity: str,
        from_: Optional[Timestamp],
        to: Optional[Timestamp],
        feature: Optional[str],
        tz: Optional[str],
    ) -> Dict[str, str]:
        params = {"granularity": granularity}
        if from_ is not None:
            params["from"] = _core.format_time(from_, "from_")
        if to is not None:
            params["to"] = _core.format_time(to, "to")
        if feature is not None:
            params["feature"] = feature
        if tz is not None:
            params["tz"] = tz
        return params

    @staticmethod
    def _tenant_body(**settings: Any) -> Dict[str, Any]:
        names = {
            "name": "name",
            "monthly_quota": "monthlyQuota",
            "billing_day": "billingDay",
            "timezone": "timezone",
            "alert_thresholds": "alertThresholds",
            "monthly_budget": "monthlyBudget",
            "tokens_per_minute": "tokensPerMinute",
            "requests_per_minute": "requestsPerMinute",
        }
        nullable = {"monthly_budget", "tokens_per_minute", "requests_per_minute"}
        body = {}
        for key, value in settings.items():
            if value is UNSET or (value is None and key not in nullable):
                continue
            body[names[key]] = value
        return body


class Client(_Base):
    """A FlagMeter client for threaded code.

    ``record`` queues an event and returns its id at once; a background
    thread sends the queue in batches of up to ``batch_size`` events, when
    a batch is full, when the oldest queued event has waited
    ``flush_interval`` seconds, at ``flush()``, at ``close()`` and at
    interpreter exit. Every request is retried on connection errors,
    timeouts, 429, 502, 503 and 504 (see :class:`RetryPolicy`).

    Use it as a context manager, or call ``close()``::

        with Client("http://127.0.0.1:3000", api_key=KEY) as fm:
            fm.record("acme-corp", "gpt-4o", input_tokens=1200, output_tokens=300)
    """

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
        transport: Optional[httpx.BaseTransport] = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key,
            timeout=timeout,
            retry=retry,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_queue=max_queue,
            enqueue_timeout=enqueue_timeout,
            on_error=on_error,
        )
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers(), transport=transport)
        # One condition guards the queue and the counters below; record()
        # waits on it for room, flush() for its events to be done, and the
        # sender for work.
        self._cond = threading.Condition()
        self._pending: Deque[WireEvent] = collections.deque()
        self._enqueued = 0  # events ever queued
        self._taken = 0  # events the sender has taken off the queue
        self._done = 0  # events sent or reported failed
        self._flush_target = 0  # flush() wants every event up to this one taken now
        self._due = 0.0  # when the oldest queued event has waited long enough
        self._closed = False
        self._sender: Optional[threading.Thread] = None
        # A weak reference, so that the exit hook does not keep the client alive.
        self._exit_hook = functools.partial(_close_at_exit, weakref.ref(self))
        atexit.register(self._exit_hook)

    # -- requests ----------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Optional[Mapping[str, Any]] = None,
        weight: int = 0,
        refusal_ok: bool = False,
    ) -> httpx.Response:
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
                response = self._http.request(method, path, json=json, params=params, timeout=timeout)
            except RETRYABLE_ERRORS as exc:
                failure: BaseException = exc
            else:
                status = response.status_code
                if status < 400 or (refusal_ok and _core.is_refusal(status, response.content)):
                    return response
                failure = _core.api_error(status, response.content)
                if status not in _core.RETRY_STATUSES:
                    raise failure
                retry_after = _core.parse_retry_after(response.headers.get("retry-after"))
            delay = policy.backoff(attempt, retry_after)
            if time.monotonic() + delay >= deadline:
                raise DeadlineExceeded(f"{method} {path}: gave up after {attempt + 1} attempt(s)", failure) from failure
            self.stats.add(retried=weight)
            time.sleep(delay)
            attempt += 1

    def _send_batch(self, events: List[WireEvent], failures: List[Tuple[BaseException, List[WireEvent]]]) -> List[str]:
        """Sends events (at most MAX_BATCH), counts them, and returns the ids
        sent; what is given up on goes to ``failures``. A batch the api
        refuses as invalid (400) or too large (413) is halved until the
        refused events stand alone, so that one bad event does not take
        its neighbours down with it; the ids make resending the rest safe."""
        try:
            self._request("POST", "/api/events/batch", json={"events": events}, weight=len(events))
        except ApiError as err:
            if err.status in (400, 413) and len(events) > 1:
                half = len(events) // 2
                return self._send_batch(events[:half], failures) + self._send_batch(events[half:], failures)
            failures.append((err, events))
        except FlagMeterError as err:
            failures.append((err, events))
        else:
            self.stats.add(sent=len(events))
            return [event["id"] for event in events]
        self.stats.add(failed=len(events))
        return []

    # -- events --------------------------------------------------------------

    def record(
        self,
        tenant: str,
        feature: str,
        tokens: Optional[int] = None,
        *,
        input_tokens: Optional[int] = None,
        output_tokens: Optional[int] = None,
        cache_read_tokens: Optional[int] = None,
        cache_write_tokens: Optional[int] = None,
        id: Optional[str] = None,
        timestamp: Optional[Timestamp] = None,
        reservation_id: Optional[str] = None,
    ) -> str:
        """Queues one event and returns its id (a UUIDv7 unless given).

        Waits up to ``enqueue_timeout`` for room when the queue is full,
        then raises :class:`QueueFull`. Raises ``ValueError`` at once for an
        event the api would refuse."""
        event = _core.build_event(
            tenant,
            feature,
            tokens,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read_tokens,
            cache_write_tokens=cache_write_tokens,
            id=id,
            timestamp=timestamp,
            reservation_id=reservation_id,
        )
        with self._cond:
            if self._closed:
                raise RuntimeError("the client is closed")
            self._start_sender()
            wait_until = time.monotonic() + self._enqueue_timeout
            while len(self._pending) >= self._max_queue:
                remaining = wait_until - time.monotonic()
                if remaining <= 0:
                    raise QueueFull(f"{len(self._pending)} events queued; none sent for {self._enqueue_timeout}s")
                self._cond.wait(remaining)
            if not self._pending:
                self._due = time.monotonic() + self._flush_interval
            self._pending.append(event)
            self._enqueued += 1
            self.stats.queued = len(self._pending)
            if len(self._pending) >= self._batch_size:
                self._cond.notify_all()
        return str(event["id"])

    def record_batch(self, events: Iterable[Union[Event, Mapping[str, Any]]]) -> List[str]:
        """Sends events now (not through the queue), 1,000 to a request,
        and returns their ids. Every chunk is tried; the events that could
        not be delivered are then raised as :class:`FlushError`."""
        bodies = [_core.build_event(**event) for event in events]
        ids: List[str] = []
        failures: List[Tuple[BaseException, List[WireEvent]]] = []
        for start in range(0, len(bodies), MAX_BATCH):
            ids += self._send_batch(bodies[start : start + MAX_BATCH], failures)
        if failures:
            raise FlushError(failures)
        return ids

    def void(self, tenant: str, id: str) -> None:
        """Voids a recorded event (idempotent; may come before the event)."""
        self._request("POST", "/api/events/void", json={"tenant": tenant, "id": id})

    # -- reads ---------------------------------------------------------------

    def usage(self, tenant: str) -> Usage:
        """The tenant's current billing period."""
        return cast(Usage, self._request("GET", f"/api/usage/{_path(tenant)}").json())

    def timeseries(
        self,
        tenant: str,
        granularity: str = "hour",
        *,
        from_: Optional[Timestamp] = None,
        to: Optional[Timestamp] = None,
        feature: Optional[str] = None,
        tz: Optional[str] = None,
    ) -> Timeseries:
        """Usage per ``minute``, ``hour`` or ``day`` bucket."""
        params = self._timeseries_params(granularity, from_, to, feature, tz)
        return cast(Timeseries, self._request("GET", f"/api/usage/{_path(tenant)}/timeseries", params=params).json())

    def check(self, tenant: str, tokens: int = 0) -> Check:
        """Whether the tenant may use ``tokens`` more tokens now (advisory:
        use ``reserve`` or ``call`` for a limit that holds)."""
        return cast(Check, self._request("GET", f"/api/usage/{_path(tenant)}/check", params={"tokens": tokens}).json())

    # -- reservations --------------------------------------------------------

    def reserve(
        self,
        tenant: str,
        tokens: int,
        *,
        feature: Optional[str] = None,
        input_tokens: Optional[int] = None,
        output_tokens: Optional[int] = None,
        cache_read_tokens: Optional[int] = None,
        cache_write_tokens: Optional[int] = None,
        ttl_seconds: Optional[int] = None,
        id: Optional[str] = None,
    ) -> Reservation:
        """Holds ``tokens`` of the tenant's limits for one call; raises
        :class:`LimitExceeded` when a limit refuses."""
        body = _core.reservation_body(
            tenant,
            tokens,
            feature=feature,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read_tokens,
            cache_write_tokens=cache_write_tokens,
            ttl_seconds=ttl_seconds,
            id=id,
        )
        response = self._request("POST", "/api/reservations", json=body, refusal_ok=True)
        if response.status_code == 429:
            retry_after = _core.parse_retry_after(response.headers.get("retry-after"))
            raise _core.limit_exceeded(tenant, response.json(), retry_after)
        return cast(Reservation, response.json())

    def release(self, reservation_id: str) -> None:
        """Gives back an unused reservation (idempotent)."""
        self._request("DELETE", f"/api/reservations/{_path(reservation_id)}")

    def call(self, tenant: str, feature: str, estimate_tokens: int, *, ttl_seconds: Optional[int] = None) -> "Call":
        """A context manager around one model call: reserves
        ``estimate_tokens`` on entry (raising :class:`LimitExceeded` when
        refused), ``call.record(response)`` records the call's usage against
        the reservation, and leaving the block without recording (an
        exception, say) releases it."""
        return Call(self, tenant, feature, estimate_tokens, ttl_seconds)

    # -- tenants -------------------------------------------------------------

    def put_tenant(
        self,
        tenant: str,
        *,
        name: Optional[str] = None,
        monthly_quota: Optional[int] = None,
        billing_day: Optional[int] = None,
        timezone: Optional[str] = None,
        alert_thresholds: Optional[List[int]] = None,
        monthly_budget: Any = UNSET,
        tokens_per_minute: Any = UNSET,
        requests_per_minute: Any = UNSET,
    ) -> Tenant:
        """Creates or updates a tenant's settings. Settings left out keep
        their value; ``monthly_budget``, ``tokens_per_minute`` and
        ``requests_per_minute`` set to ``None`` remove that limit."""
        body = self._tenant_body(
            name=name,
            monthly_quota=monthly_quota,
            billing_day=billing_day,
            timezone=timezone,
            alert_thresholds=alert_thresholds,
            monthly_budget=monthly_budget,
            tokens_per_minute=tokens_per_minute,
            requests_per_minute=requests_per_minute,
        )
        return cast(Tenant, self._request("PUT", f"/api/tenants/{_path(tenant)}", json=body).json())

    # -- the queue -----------------------------------------------------------

    def _start_sender(self) -> None:
        if self._sender is None:
            self._sender = threading.Thread(target=self._run_sender, name="flagmeter-sender", daemon=True)
            self._sender.start()

    def _next_batch(self) -> Optional[List[WireEvent]]:
        """Waits for a batch worth sending: a full one, the oldest event's
        interval passed, a flush, or closing. None when closed and empty."""
        with self._cond:
            while True:
                if self._pending and (
                    self._closed
                    or len(self._pending) >= self._batch_size
                    or self._taken < self._flush_target
                    or time.monotonic() >= self._due
                ):
                    break
                if self._closed:
                    return None
                self._cond.wait(max(0.0, self._due - time.monotonic()) if self._pending else None)
            batch = [self._pending.popleft() for _ in range(min(self._batch_size, len(self._pending)))]
            self._taken += len(batch)
            self.stats.queued = len(self._pending)
            self._cond.notify_all()  # room for record()
            return batch

    def _run_sender(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            failures: List[Tuple[BaseException, List[WireEvent]]] = []
            self._send_batch(batch, failures)
            with self._cond:
                try:
                    self._report(failures)
                except Exception:  # on_error raised: the batch is still done
                    log.exception("flagmeter: on_error raised")
                self._done += len(batch)
                self._cond.notify_all()

    def flush(self, timeout: Optional[float] = None) -> None:
        """Sends every event queued so far and waits until each is sent or
        given up on. Raises :class:`FlushError` with the events that could
        not be delivered since the last flush, and ``TimeoutError`` when
        ``timeout`` seconds pass first."""
        with self._cond:
            target = self._enqueued
            self._flush_target = max(self._flush_target, target)
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._done >= target, timeout):
                raise TimeoutError(f"flush: {target - self._done} event(s) still unsent after {timeout}s")
            error = self._take_failures()
        if error is not None:
            raise error

    def close(self, timeout: Optional[float] = None) -> None:
        """Flushes, stops the sender and closes the connections. Raises
        like ``flush`` when events could not be delivered."""
        if self._closed:
            return
        atexit.unregister(self._exit_hook)
        try:
            self.flush(timeout)
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            if self._sender is not None:
                self._sender.join(timeout)
            self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()


def _close_at_exit(ref: "weakref.ReferenceType[Client]") -> None:
    client = ref()
    if client is None:
        return
    try:
        client.close(timeout=client._retry.deadline + client._timeout)
    except Exception as err:  # at exit, logging is all that is left to do
        log.error("flagmeter: at exit: %s", err)


class Call:
    """One model call (see :meth:`Client.call`)."""

    def __init__(
        self, client: Client, tenant: str, feature: str, estimate_tokens: int, ttl_seconds: Optional[int]
    ) -> None:
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

    def __enter__(self) -> "Call":
        client = self.client
        if client._reservations is not False:
            try:
                self.reservation = client.reserve(
                    self.tenant, self.estimate_tokens, feature=self.feature, ttl_seconds=self.ttl_seconds
                )
                client._reservations = True
                return self
            except ApiError as err:
                if not (client._reservations is None and _core.route_missing(err)):
                    raise
                client._reservations = False
        # An api without reservations: the (advisory) check instead.
        check = client.check(self.tenant, self.estimate_tokens)
        if not check.get("allowed", False):
            raise _refusal_from_check(client, self.tenant, check)
        return self

    def record(
        self,
        response: Any = None,
        *,
        tokens: Optional[int] = None,
        input_tokens: Optional[int] = None,
        output_tokens: Optional[int] = None,
        cache_read_tokens: Optional[int] = None,
        cache_write_tokens: Optional[int] = None,
        id: Optional[str] = None,
        timestamp: Optional[Timestamp] = None,
    ) -> str:
        """Records the call's usage with the reservation: from a provider's
        ``response`` (OpenAI or Anthropic, see ``flagmeter.providers``), or
        from the token arguments. Returns the event id."""
        if self.event_id is not None:
            raise RuntimeError("this call was already recorded")
        classes: Dict[str, Any] = (
            dict(usage_from_response(response))
            if response is not None
            else dict(
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cache_read_tokens=cache_read_tokens,
                cache_write_tokens=cache_write_tokens,
            )
        )
        self.event_id = self.client.record(
            self.tenant, self.feature, tokens, id=id, timestamp=timestamp, reservation_id=self.reservation_id, **classes
        )
        return self.event_id

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self.reservation_id is None or self.event_id is not None:
            return
        try:
            self.client.release(self.reservation_id)
        except FlagMeterError as err:
            # Not fatal: an unreleased reservation expires at its TTL.
            log.warning("flagmeter: could not release reservation %s: %s", self.reservation_id, err)


def _refusal_from_check(client: Client, tenant: str, check: Mapping[str, Any]) -> LimitExceeded:
    period_end = None
    if _core.names_no_limit(check):
        try:
            period_end = client.usage(tenant).get("periodEnd")
        except FlagMeterError:
            pass
    return _core.limit_exceeded(tenant, check, None, period_end)
