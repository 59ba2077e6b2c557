"""One api and pipeline for the whole session (see support.Stack)."""

from __future__ import annotations

from typing import Iterator

import pytest
from support import Stack, reservations_available


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    running = Stack.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def has_reservations(stack: Stack) -> bool:
    return reservations_available(stack.url, stack.key)
