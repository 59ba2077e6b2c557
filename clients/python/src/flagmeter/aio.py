"""The asyncio client: the same calls as :class:`flagmeter.Client`,
awaited, with a background task that sends queued events in batches."""

from __future__ import annotations

import asyncio
import atexit
import collections
import functools
import time
import weakref
from types import TracebackType
from typing import Any, Deque, Dict, Iterable, List, Mapping, Optional, Tuple, Type, Union, cast

import httpx

from . import _core
from ._core import MAX_BATCH, RetryPolicy, WireEvent
from .client import RETRYABLE_ERRORS, UNSET, Client, OnError, _Base, _path, log
from .errors import ApiError, DeadlineExceeded, FlagMeterError, FlushError, QueueFull
from .providers import usage_from_response
from .types import Check, Event, Reservation, Tenant, Timeseries, Timestamp, Usage

Failures = List[Tuple[BaseException, List[WireEvent]]]


class AsyncClient(_Base):
    """A FlagMeter client for asyncio code.

    ``await record(...)`` queues an event and returns its id; a background
    task sends the queue in batches (see :class:`flagmeter.Client` for when).
    Use it as an async context manager, or ``await close()``. Events still
    queued when the interpreter exits without ``close()`` (the loop already
    gone) are sent then, synchronously.
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
        transport: Optional[httpx.AsyncBaseTransport] = None,
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
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self._headers(), transport=transport)
        self._pending: Deque[WireEvent] = collections.deque()
        self._in_flight: List[WireEvent] = []  # the batch being sent, resent at exit if cut off
        # Made on first use, inside the running loop (Python 3.9 binds a
        # Condition to the loop current when it is made).
        self._cond_: Optional[asyncio.Condition] = None
        self._enqueued = 0
        self._taken = 0
        self._done = 0
        self._flush_target = 0
        self._due = 0.0
        self._closed = False
        self._sender: Optional["asyncio.Task[None]"] = None
        self._exit_hook = functools.partial(_drain_at_exit, weakref.ref(self))
        atexit.register(self._exit_hook)

    @property
    def _cond(self) -> asyncio.Condition:
        if self._cond_ is None:
            self._cond_ = asyncio.Condition()
        return self._cond_

    # -- requests ----------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Optional[Mapping[str, Any]] = None,
        weight: int = 0,
        refusal_ok: bool = False,
    ) -> httpx.Response:
        """As :meth:`flagmeter.Client._request`, awaited."""
        policy = self._retry
        deadline = time.monotonic() + policy.deadline
        attempt = 0
        while True:
            timeout = max(0.001, min(self._timeout, deadline - time.monotonic()))
            retry_after: Optional[float] = None
            try:
                response = await self._http.request(method, path, json=json, params=params, timeout=timeout)
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
            await asyncio.sleep(delay)
            attempt += 1

    async def _send_batch(self, events: List[WireEvent], failures: Failures) -> List[str]:
        """As :meth:`flagmeter.Client._send_batch`, awaited."""
        try:
            await self._request("POST", "/api/events/batch", json={"events": events}, weight=len(events))
        except ApiError as err:
            if err.status in (400, 413) and len(events) > 1:
                half = len(events) // 2
                first = await self._send_batch(events[:half], failures)
                return first + await self._send_batch(events[half:], failures)
            failures.append((err, events))
        except FlagMeterError as err:
            failures.append((err, events))
        else:
            self.stats.add(sent=len(events))
            return [event["id"] for event in events]
        self.stats.add(failed=len(events))
        return []

    # -- events --------------------------------------------------------------

    async def record(
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
        """Queues one event and returns its id (see :meth:`flagmeter.Client.record`)."""
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
        async with self._cond:
            if self._closed:
                raise RuntimeError("the client is closed")
            self._start_sender()
            if len(self._pending) >= self._max_queue:
                try:
                    await asyncio.wait_for(
                        self._cond.wait_for(lambda: len(self._pending) < self._max_queue), self._enqueue_timeout
                    )
                except asyncio.TimeoutError:
                    raise QueueFull(
                        f"{len(self._pending)} events queued; none sent for {self._enqueue_timeout}s"
                    ) from None
            if not self._pending:
                self._due = time.monotonic() + self._flush_interval
            self._pending.append(event)
            self._enqueued += 1
            self.stats.queued = len(self._pending)
            if len(self._pending) >= self._batch_size:
                self._cond.notify_all()
        return str(event["id"])

    async def record_batch(self, events: Iterable[Union[Event, Mapping[str, Any]]]) -> List[str]:
        """Sends events now, 1,000 to a request, and returns their ids;
        raises :class:`FlushError` with any events that were refused."""
        bodies = [_core.build_event(**event) for event in events]
        ids: List[str] = []
        failures: Failures = []
        for start in range(0, len(bodies), MAX_BATCH):
            ids += await self._send_batch(bodies[start : start + MAX_BATCH], failures)
        if failures:
            raise FlushError(failures)
        return ids

    async def void(self, tenant: str, id: str) -> None:
        await self._request("POST", "/api/events/void", json={"tenant": tenant, "id": id})

    # -- reads ---------------------------------------------------------------

    async def usage(self, tenant: str) -> Usage:
        return cast(Usage, (await self._request("GET", f"/api/usage/{_path(tenant)}")).json())

    async def timeseries(
        self,
        tenant: str,
        granularity: str = "hour",
        *,
        from_: Optional[Timestamp] = None,
        to: Optional[Timestamp] = None,
        feature: Optional[str] = None,
        tz: Optional[str] = None,
    ) -> Timeseries:
        params = self._timeseries_params(granularity, from_, to, feature, tz)
        return cast(
            Timeseries, (await self._request("GET", f"/api/usage/{_path(tenant)}/timeseries", params=params)).json()
        )

    async def check(self, tenant: str, tokens: int = 0) -> Check:
        path = f"/api/usage/{_path(tenant)}/check"
        return cast(Check, (await self._request("GET", path, params={"tokens": tokens})).json())

    # -- reservations --------------------------------------------------------

    async def reserve(
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
        response = await self._request("POST", "/api/reservations", json=body, refusal_ok=True)
        if response.status_code == 429:
            retry_after = _core.parse_retry_after(response.headers.get("retry-after"))
            raise _core.limit_exceeded(tenant, response.json(), retry_after)
        return cast(Reservation, response.json())

    async def release(self, reservation_id: str) -> None:
        await self._request("DELETE", f"/api/reservations/{_path(reservation_id)}")

    def call(
        self, tenant: str, feature: str, estimate_tokens: int, *, ttl_seconds: Optional[int] = None
    ) -> "AsyncCall":
        """``async with client.call(...) as call:`` (see :meth:`flagmeter.Client.call`)."""
        return AsyncCall(self, tenant, feature, estimate_tokens, ttl_seconds)

    # -- tenants -------------------------------------------------------------

    async def put_tenant(
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
        return cast(Tenant, (await self._request("PUT", f"/api/tenants/{_path(tenant)}", json=body)).json())

    # -- the queue -----------------------------------------------------------

    def _start_sender(self) -> None:
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._run_sender())

    def _ready(self) -> bool:
        return bool(self._pending) and (
            self._closed
            or len(self._pending) >= self._batch_size
            or self._taken < self._flush_target
            or time.monotonic() >= self._due
        )

    async def _next_batch(self) -> Optional[List[WireEvent]]:
        async with self._cond:
            while not self._ready():
                if self._closed:
                    return None
                timeout = max(0.0, self._due - time.monotonic()) if self._pending else None
                try:
                    await asyncio.wait_for(self._cond.wait(), timeout)
                except asyncio.TimeoutError:
                    pass
            batch = [self._pending.popleft() for _ in range(min(self._batch_size, len(self._pending)))]
            self._taken += len(batch)
            self._in_flight = batch
            self.stats.queued = len(self._pending)
            self._cond.notify_all()
            return batch

    async def _run_sender(self) -> None:
        while True:
            batch = await self._next_batch()
            if batch is None:
                return
            failures: Failures = []
            await self._send_batch(batch, failures)
            async with self._cond:
                self._in_flight = []
                try:
                    self._report(failures)
                except Exception:  # on_error raised: the batch is still done
                    log.exception("flagmeter: on_error raised")
                self._done += len(batch)
                self._cond.notify_all()

    async def flush(self, timeout: Optional[float] = None) -> None:
        """Sends every event queued so far and waits for the outcome; raises
        :class:`FlushError` with the events not delivered since the last
        flush, ``asyncio.TimeoutError`` when ``timeout`` passes first."""
        async with self._cond:
            target = self._enqueued
            self._flush_target = max(self._flush_target, target)
            self._cond.notify_all()
            await asyncio.wait_for(self._cond.wait_for(lambda: self._done >= target), timeout)
            error = self._take_failures()
        if error is not None:
            raise error

    async def close(self, timeout: Optional[float] = None) -> None:
        """Flushes, stops the sender and closes the connections."""
        if self._closed:
            return
        atexit.unregister(self._exit_hook)
        try:
            await self.flush(timeout)
        finally:
            async with self._cond:
                self._closed = True
                self._cond.notify_all()
            if self._sender is not None:
                await asyncio.wait([self._sender], timeout=timeout)
            await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.close()


def _drain_at_exit(ref: "weakref.ReferenceType[AsyncClient]") -> None:
    """At interpreter exit the event loop is gone: what is still queued
    (and a batch cut off mid-send: its ids make resending it safe) goes
    out through a synchronous client."""
    client = ref()
    if client is None or client._closed:
        return
    events = client._in_flight + list(client._pending)
    client._pending.clear()
    if not events:
        return
    sync = Client(client.base_url, client._api_key, timeout=client._timeout, retry=client._retry)
    atexit.unregister(sync._exit_hook)
    failures: Failures = []
    try:
        for start in range(0, len(events), MAX_BATCH):
            sync._send_batch(events[start : start + MAX_BATCH], failures)
    finally:
        sync._http.close()
    for error, lost in failures:
        log.error("flagmeter: at exit: %d event(s) not delivered: %s", len(lost), error)


class AsyncCall:
    """One model call (see :meth:`AsyncClient.call`)."""

    def __init__(
        self, client: AsyncClient, tenant: str, feature: str, estimate_tokens: int, ttl_seconds: Optional[int]
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

    async def __aenter__(self) -> "AsyncCall":
        client = self.client
        if client._reservations is not False:
            try:
                self.reservation = await client.reserve(
                    self.tenant, self.estimate_tokens, feature=self.feature, ttl_seconds=self.ttl_seconds
                )
                client._reservations = True
                return self
            except ApiError as err:
                if not (client._reservations is None and _core.route_missing(err)):
                    raise
                client._reservations = False
        check = await client.check(self.tenant, self.estimate_tokens)
        if not check.get("allowed", False):
            period_end = None
            if _core.names_no_limit(check):
                try:
                    period_end = (await client.usage(self.tenant)).get("periodEnd")
                except FlagMeterError:
                    pass
            raise _core.limit_exceeded(self.tenant, check, None, period_end)
        return self

    async def record(
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
        """See :meth:`flagmeter.client.Call.record`."""
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
        self.event_id = await self.client.record(
            self.tenant, self.feature, tokens, id=id, timestamp=timestamp, reservation_id=self.reservation_id, **classes
        )
        return self.event_id

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self.reservation_id is None or self.event_id is not None:
            return
        try:
            await self.client.release(self.reservation_id)
        except FlagMeterError as err:
            log.warning("flagmeter: could not release reservation %s: %s", self.reservation_id, err)


__all__ = ["AsyncClient", "AsyncCall"]
