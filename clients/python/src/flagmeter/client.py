"""The synchronous client: typed calls, retries, and a background thread
that sends queued events in batches."""

from __future__ import annotations

import atexit
import functools
import threading
import time
import weakref
from types import TracebackType
from typing import Any, Iterable, List, Mapping, Optional, Type, TypeVar, Union

import httpx

from . import _core
from ._calls import UNSET, Calls, CallState, Failures, OnError, log
from ._core import WireEvent
from ._flow import RETRYABLE_ERRORS, Done, Flow, Sleep, Step, advance
from .types import Check, Event, Reservation, Tenant, Timeseries, Timestamp, Usage

# RETRYABLE_ERRORS, OnError and UNSET were defined here first, and stay importable from here.
__all__ = ["RETRYABLE_ERRORS", "UNSET", "Call", "Client", "OnError"]

T = TypeVar("T")


class Client(Calls[httpx.BaseTransport]):
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

    def _connect(self, transport: Optional[httpx.BaseTransport]) -> None:
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers(), transport=transport)
        # One condition guards the queue; record() waits on it for room,
        # flush() for its events to be done, and the sender for work.
        self._cond = threading.Condition()
        self._sender: Optional[threading.Thread] = None
        # A weak reference, so that the exit hook does not keep the client alive.
        self._exit_hook = functools.partial(_close_at_exit, weakref.ref(self))
        atexit.register(self._exit_hook)

    # -- running flows -------------------------------------------------------

    def _run(self, flow: Flow[T]) -> T:
        step = advance(flow, None)
        while not isinstance(step, Done):
            step = advance(flow, self._outcome(step))
        return step.value

    def _outcome(self, step: Step) -> Any:
        try:
            if isinstance(step, Sleep):
                return time.sleep(step.seconds)
            return self._http.request(step.method, step.path, json=step.json, params=step.params, timeout=step.timeout)
        except RETRYABLE_ERRORS as err:
            return err

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
            self._check_open()
            self._start_sender()
            if not self._cond.wait_for(self._queue.has_room, self._enqueue_timeout):
                raise self._queue_full()
            if self._queue.add(event):
                self._cond.notify_all()
        return str(event["id"])

    def record_batch(self, events: Iterable[Union[Event, Mapping[str, Any]]]) -> List[str]:
        """Sends events now (not through the queue), 1,000 to a request,
        and returns their ids. Every chunk is tried; the events that could
        not be delivered are then raised as :class:`FlushError`."""
        return self._run(self._record_batch(events))

    def void(self, tenant: str, id: str) -> None:
        """Voids a recorded event (idempotent; may come before the event)."""
        self._run(self._void(tenant, id))

    # -- reads ---------------------------------------------------------------

    def usage(self, tenant: str) -> Usage:
        """The tenant's current billing period."""
        return self._run(self._usage(tenant))

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
        return self._run(self._timeseries(tenant, granularity, from_, to, feature, tz))

    def check(self, tenant: str, tokens: int = 0) -> Check:
        """Whether the tenant may use ``tokens`` more tokens now (advisory:
        use ``reserve`` or ``call`` for a limit that holds)."""
        return self._run(self._check(tenant, tokens))

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
        return self._run(
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

    def release(self, reservation_id: str) -> None:
        """Gives back an unused reservation (idempotent)."""
        self._run(self._release(reservation_id))

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
        return self._run(
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
        if self._sender is None:
            self._sender = threading.Thread(target=self._run_sender, name="flagmeter-sender", daemon=True)
            self._sender.start()

    def _next_batch(self) -> Optional[List[WireEvent]]:
        """Waits for a batch worth sending; None when closed and empty."""
        with self._cond:
            while not self._queue.ready():
                if self._queue.finished():
                    return None
                self._cond.wait(self._queue.wait_time())
            self._cond.notify_all()  # room for record()
            return self._queue.take()

    def _run_sender(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            failures: Failures = []
            self._run(self._send_batch(batch, failures))
            with self._cond:
                self._settle(batch, failures)
                self._cond.notify_all()

    def flush(self, timeout: Optional[float] = None) -> None:
        """Sends every event queued so far and waits until each is sent or
        given up on. Raises :class:`FlushError` with the events that could
        not be delivered since the last flush, and ``TimeoutError`` when
        ``timeout`` seconds pass first."""
        with self._cond:
            target = self._queue.flush()
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._queue.flushed(target), timeout):
                raise TimeoutError(f"flush: {self._queue.unsent(target)} event(s) still unsent after {timeout}s")
            self._raise_failures()

    def close(self, timeout: Optional[float] = None) -> None:
        """Flushes, stops the sender and closes the connections. Raises
        like ``flush`` when events could not be delivered."""
        if self._queue.closed:
            return
        atexit.unregister(self._exit_hook)
        try:
            self.flush(timeout)
        finally:
            with self._cond:
                self._queue.closed = True
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


class Call(CallState[Client]):
    """One model call (see :meth:`Client.call`)."""

    def __enter__(self) -> "Call":
        self.client._run(self._open())
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
        self.event_id = self.client.record(**event)
        return self.event_id

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.client._run(self._close())
