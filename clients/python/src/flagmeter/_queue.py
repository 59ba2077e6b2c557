"""The queue of events waiting to be sent, and when a batch of them is due:
the bookkeeping both clients share. It neither locks nor waits; each client
guards it with its own condition (a thread's or asyncio's) and waits on that."""

from __future__ import annotations

import collections
import time
from typing import Deque, List, Optional

from ._core import Stats, WireEvent


class Queue:
    """Events queued by ``record``, taken in batches by the sender."""

    def __init__(self, stats: Stats, batch_size: int, flush_interval: float, max_queue: int) -> None:
        self._stats = stats
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_queue = max_queue
        self.pending: Deque[WireEvent] = collections.deque()
        self.in_flight: List[WireEvent] = []  # the batch being sent, resent at exit if cut off
        self._enqueued = 0  # events ever queued
        self._taken = 0  # events the sender has taken off the queue
        self._done = 0  # events sent or reported failed
        self._flush_target = 0  # flush() wants every event up to this one taken now
        self._due = 0.0  # when the oldest queued event has waited long enough
        self.closed = False

    def has_room(self) -> bool:
        return len(self.pending) < self._max_queue

    def add(self, event: WireEvent) -> bool:
        """Queues the event; True when a full batch now waits for the sender."""
        if not self.pending:
            self._due = time.monotonic() + self._flush_interval
        self.pending.append(event)
        self._enqueued += 1
        self._stats.queued = len(self.pending)
        return len(self.pending) >= self._batch_size

    def ready(self) -> bool:
        """Whether a batch is worth sending: a full one, the oldest event's
        interval passed, a flush, or closing."""
        return bool(self.pending) and (
            self.closed
            or len(self.pending) >= self._batch_size
            or self._taken < self._flush_target
            or time.monotonic() >= self._due
        )

    def finished(self) -> bool:
        """Closed and empty: the sender stops."""
        return self.closed and not self.pending

    def wait_time(self) -> Optional[float]:
        """How long the sender may sleep before a batch falls due (None:
        until woken)."""
        return max(0.0, self._due - time.monotonic()) if self.pending else None

    def take(self) -> List[WireEvent]:
        batch = [self.pending.popleft() for _ in range(min(self._batch_size, len(self.pending)))]
        self._taken += len(batch)
        self.in_flight = batch
        self._stats.queued = len(self.pending)
        return batch

    def done(self, batch: List[WireEvent]) -> None:
        self.in_flight = []
        self._done += len(batch)

    def flush(self) -> int:
        """Asks for every event queued so far to be sent now; returns the
        count :meth:`flushed` waits for."""
        self._flush_target = max(self._flush_target, self._enqueued)
        return self._enqueued

    def flushed(self, target: int) -> bool:
        return self._done >= target

    def unsent(self, target: int) -> int:
        return target - self._done

    def drain(self) -> List[WireEvent]:
        """Everything not yet delivered (a batch cut off mid-send too: its
        ids make resending it safe), taken off the queue."""
        events = self.in_flight + list(self.pending)
        self.pending.clear()
        self.in_flight = []
        return events
