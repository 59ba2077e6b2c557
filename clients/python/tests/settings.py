"""Client settings the tests share. They live apart from ``support``, which
the generated client's test imports where the flagmeter package is not
installed."""

from __future__ import annotations

from typing import Any, Dict

from flagmeter import RetryPolicy

FAST = RetryPolicy(deadline=10, initial_backoff=0.01, max_backoff=0.2)
"""Retries that suit a test: soon, and given up on within seconds."""


def stuck_settings(max_queue: int, enqueue_timeout: float, timeout: float, deadline: float) -> Dict[str, Any]:
    """A client's settings for ``support.silent_server``: a batch an event, sent
    at once, a small queue, and a request that gives up soon."""
    return dict(
        api_key="k",
        batch_size=1,
        max_queue=max_queue,
        enqueue_timeout=enqueue_timeout,
        flush_interval=0.01,
        timeout=timeout,
        retry=RetryPolicy(deadline=deadline, initial_backoff=0.05),
    )
