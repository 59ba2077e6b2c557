"""Done when: a client that loses every fourth answer after the api stored
the batch (the proxy forwards it, then drops the real answer and says 503)
still ends with exact totals."""

from __future__ import annotations

import random

from support import Proxy, Stack, every_fourth_answer_lost, tenant_name, wait_for_total

from flagmeter import AsyncClient, Client, RetryPolicy

FAST = RetryPolicy(deadline=20, initial_backoff=0.01, max_backoff=0.2)


def test_lost_answers_do_not_double_count_queued_events(stack: Stack) -> None:
    tenant = tenant_name("py-lossy")
    rng = random.Random(7)
    with Proxy(stack.url, every_fourth_answer_lost) as proxy:
        with Client(proxy.url, api_key=stack.key, batch_size=50, flush_interval=0.05, retry=FAST) as fm:
            recorded = 0
            for n in range(2000):
                tokens = rng.randint(1, 5000)
                if n % 3:
                    fm.record(tenant, "gpt-4o", tokens)
                else:
                    fm.record(tenant, "gpt-4o", input_tokens=tokens, output_tokens=7, cache_read_tokens=1)
                    tokens += 8
                recorded += tokens
            fm.flush()

            assert proxy.lost >= 10, "the proxy lost no answer: the test tests nothing"
            # Each lost answer is one batch re-sent: its events count as retried.
            assert fm.stats.sent == 2000 and fm.stats.failed == 0 and fm.stats.retried >= proxy.lost
    with Client(stack.url, api_key=stack.key) as reader:
        usage = wait_for_total(lambda: reader.usage(tenant), recorded)
    assert usage["totalTokens"] == recorded


def test_lost_answers_do_not_double_count_batches_or_single_reads(stack: Stack) -> None:
    tenant = tenant_name("py-lossy-batch")
    with Proxy(stack.url, every_fourth_answer_lost) as proxy:
        with Client(proxy.url, api_key=stack.key, retry=FAST) as fm:
            recorded = 0
            for round_ in range(12):
                events = [{"tenant": tenant, "feature": "claude", "tokens": 10 + round_} for _ in range(100)]
                fm.record_batch(events)
                recorded += 100 * (10 + round_)
            assert proxy.lost == 3
            usage = wait_for_total(lambda: fm.usage(tenant), recorded)
    assert usage["totalTokens"] == recorded


async def test_the_async_client_survives_lost_answers_too(stack: Stack) -> None:
    tenant = tenant_name("py-lossy-async")
    rng = random.Random(11)
    with Proxy(stack.url, every_fourth_answer_lost) as proxy:
        async with AsyncClient(proxy.url, api_key=stack.key, batch_size=40, flush_interval=0.05, retry=FAST) as fm:
            recorded = 0
            for _ in range(1200):
                tokens = rng.randint(1, 900)
                await fm.record(tenant, "gpt-4o-mini", tokens)
                recorded += tokens
            await fm.flush()
            assert proxy.lost >= 5
            assert fm.stats.sent == 1200 and fm.stats.failed == 0
    with Client(stack.url, api_key=stack.key) as reader:
        usage = wait_for_total(lambda: reader.usage(tenant), recorded)
    assert usage["totalTokens"] == recorded
