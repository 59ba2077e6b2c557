"""The asyncio client: the same calls as :class:`flagmeter.Client`,
awaited, with a background task that sends queued events in batches."""

from __future__ import annotations

import asyncio
import atexit
import functools
import weakref
from types import TracebackType
from typing import Any, Iterable, List, Mapping, Optional, Type, TypeVar, Union

import httpx

from . import _core
from ._calls import UNSET, Calls, CallState, Failures, log
from ._core import WireEvent
from ._flow import RETRYABLE_ERRORS, Done, Flow, Sleep, Step, advance
from .client import Client
from .types import Check, Event, Reservation, Tenant, Timeseries, Timestamp, Usage

T = TypeVar("T")


class AsyncClient(Calls[httpx.AsyncBaseTransport]):
    """A FlagMeter client for asyncio code.

    ``await record(...)`` queues an event and returns its id; a background
    task sends the queue in batches (see :class:`flagmeter.Client` for when).
    Use it as an async context manager, or ``await close()``. Events still
    queued when the interpreter exits without ``close()`` (the loop already
    gone) are sent then, synchronously.
    """

    def _connect(self, transport: Optional[httpx.AsyncBaseTransport]) -> None:
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self._headers(), transport=transport)
        # Made on first use, inside the running loop (Python 3.9 binds a
        # Condition to the loop current when it is made).
        self._cond_: Optional[asyncio.Condition] = None
        self._sender: Optional["asyncio.Task[None]"] = None
        self._exit_hook = functools.partial(_drain_at_exit, weakref.ref(self))
        atexit.register(self._exit_hook)

    @property
    def _cond(self) -> asyncio.Condition:
        if self._cond_ is None:
            self._cond_ = asyncio.Condition()
        return self._cond_

    # -- running flows -------------------------------------------------------

    async def _run(self, flow: Flow[T]) -> T:
        step = advance(flow, None)
        while not isinstance(step, Done):
            step = advance(flow, await self._outcome(step))
        return step.value

    async def _outcome(self, step: Step) -> Any:
        try:
            if isinstance(step, Sleep):
                return await asyncio.sleep(step.seconds)
            request = self._http.request(
                step.method, step.path, json=step.json, params=step.params, timeout=step.timeout
            )
            return await request
        except RETRYABLE_ERRORS as err:
            return err

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
            self._check_open()
            self._start_sender()
            if not self._queue.has_room():
                try:
                    await asyncio.wait_for(self._cond.wait_for(self._queue.has_room), self._enqueue_timeout)
                except asyncio.TimeoutError:
                    raise self._queue_full() from None
            if self._queue.add(event):
                self._cond.notify_all()
        return str(event["id"])

    async def record_batch(self, events: Iterable[Union[Event, Mapping[str, Any]]]) -> List[str]:
        """Sends events now, 1,000 to a request, and returns their ids;
        raises :class:`FlushError` with any events that were refused."""
        return await self._run(self._record_batch(events))

    async def void(self, tenant: str, id: str) -> None:
        await self._run(self._void(tenant, id))

    # -- reads ---------------------------------------------------------------

    async def usage(self, tenant: str) -> Usage:
        return await self._run(self._usage(tenant))

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
        return await self._run(self._timeseries(tenant, granularity, from_, to, feature, tz))

    async def check(self, tenant: str, tokens: int = 0) -> Check:
        return await self._run(self._check(tenant, tokens))

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
        return await self._run(
            self._reserve(
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
        )

    async def release(self, reservation_id: str) -> None:
        await self._run(self._release(reservation_id))

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
        return await self._run(
            self._put_tenant(
                tenant,
                name=name,
                monthly_quota=monthly_quota,
                billing_day=billing_day,
                timezone=timezone,
                alert_thresholds=alert_thresholds,
                monthly_budget=monthly_budget,
                tokens_per_minute=tokens_per_minute,
                requests_per_minute=requests_per_minute,
            )
        )

    # -- the queue -----------------------------------------------------------

    def _start_sender(self) -> None:
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._run_sender())

    async def _next_batch(self) -> Optional[List[WireEvent]]:
        async with self._cond:
            while not self._queue.ready():
                if self._queue.finished():
                    return None
                try:
                    await asyncio.wait_for(self._cond.wait(), self._queue.wait_time())
                except asyncio.TimeoutError:
                    pass
            self._cond.notify_all()
            return self._queue.take()

    async def _run_sender(self) -> None:
        while True:
            batch = await self._next_batch()
            if batch is None:
                return
            failures: Failures = []
            await self._run(self._send_batch(batch, failures))
            async with self._cond:
                self._settle(batch, failures)
                self._cond.notify_all()

    async def flush(self, timeout: Optional[float] = None) -> None:
        """Sends every event queued so far and waits for the outcome; raises
        :class:`FlushError` with the events not delivered since the last
        flush, ``asyncio.TimeoutError`` when ``timeout`` passes first."""
        async with self._cond:
            target = self._queue.flush()
            self._cond.notify_all()
            await asyncio.wait_for(self._cond.wait_for(lambda: self._queue.flushed(target)), timeout)
            self._raise_failures()

    async def close(self, timeout: Optional[float] = None) -> None:
        """Flushes, stops the sender and closes the connections."""
        if self._queue.closed:
            return
        atexit.unregister(self._exit_hook)
        try:
            await self.flush(timeout)
        finally:
            async with self._cond:
                self._queue.closed = True
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
    if client is None or client._queue.closed:
        return
    events = client._queue.drain()
    if not events:
        return
    sync = Client(client.base_url, client._api_key, timeout=client._timeout, retry=client._retry)
    atexit.unregister(sync._exit_hook)
    failures: Failures = []
    try:
        sync._run(sync._send_all(events, failures))
    finally:
        sync._http.close()
    for error, lost in failures:
        log.error("flagmeter: at exit: %d event(s) not delivered: %s", len(lost), error)


class AsyncCall(CallState[AsyncClient]):
    """One model call (see :meth:`AsyncClient.call`)."""

    async def __aenter__(self) -> "AsyncCall":
        await self.client._run(self._open())
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
        event = self._event(
            response,
            tokens,
            id,
            timestamp,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read_tokens,
            cache_write_tokens=cache_write_tokens,
        )
        self.event_id = await self.client.record(**event)
        return self.event_id

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.client._run(self._close())


__all__ = ["AsyncClient", "AsyncCall"]
