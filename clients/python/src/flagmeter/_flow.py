"""A call written once for both clients: a flow is a generator that yields
the I/O it needs (a request, a wait) and is sent back its result, so that
:class:`flagmeter.Client` runs it with blocking I/O and
:class:`flagmeter.AsyncClient` with asyncio, and neither holds any logic of
its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generator, Generic, Mapping, Optional, Tuple, Type, TypeVar, Union

import httpx

T = TypeVar("T")


@dataclass(frozen=True)
class Send:
    """One HTTP request; the flow is sent back the ``httpx.Response``, or
    thrown one of :data:`RETRYABLE_ERRORS`."""

    method: str
    path: str
    json: Any
    params: Optional[Mapping[str, Any]]
    timeout: float


@dataclass(frozen=True)
class Sleep:
    """A wait before the next attempt; the flow is sent back ``None``."""

    seconds: float


Step = Union[Send, Sleep]
Flow = Generator[Step, Any, T]


@dataclass(frozen=True)
class Done(Generic[T]):
    """A flow's result."""

    value: T


# Failures worth another attempt: the request may not have arrived, or its
# answer was lost. Not LocalProtocolError or UnsupportedProtocol: those are
# this side's mistakes and would fail the same way again.
RETRYABLE_ERRORS: Tuple[Type[BaseException], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)


def advance(flow: Flow[T], outcome: Any) -> Union[Step, Done[T]]:
    """Hands the flow the outcome of its last step (``None`` to start it;
    an exception is thrown into it) and returns its next step, or its
    result."""
    try:
        if isinstance(outcome, BaseException):
            return flow.throw(outcome)
        return flow.send(outcome)
    except StopIteration as stop:
        return Done(stop.value)
