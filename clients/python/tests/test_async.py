"""The asyncio client against the real api and pipeline."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest
from settings import FAST, stuck_settings
from support import Stack, silent_server, tenant_name, wait_for_total

from flagmeter import ApiError, AsyncClient, Client, FlushError, QueueFull


async def eventually_total(fm: AsyncClient, tenant: str, expected: int, falling: bool = False) -> None:
    # wait_for_total polls synchronously: run it off the loop.
    with Client(fm.base_url, api_key=fm._api_key) as reader:
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: wait_for_total(lambda: reader.usage(tenant), expected, falling=falling)
        )


async def test_async_records_are_batched_and_counted_exactly(stack: Stack) -> None:
    tenant = tenant_name("py-async")
    async with AsyncClient(stack.url, api_key=stack.key, batch_size=100, flush_interval=0.05, retry=FAST) as fm:
        ids = await asyncio.gather(*(fm.record(tenant, "gpt-4o", 4) for _ in range(500)))
        await fm.flush()
        assert len(set(ids)) == 500
        assert fm.stats.as_dict() == {"sent": 500, "retried": 0, "failed": 0, "queued": 0}
        await eventually_total(fm, tenant, 2000)
        usage = await fm.usage(tenant)
        assert usage["byFeature"][0]["feature"] == "gpt-4o"


async def test_async_reads_batches_voids_and_errors(stack: Stack) -> None:
    tenant = tenant_name("py-async-reads")
    async with AsyncClient(stack.url, api_key=stack.key, retry=FAST) as fm:
        saved = await fm.put_tenant(tenant, monthly_quota=1000)
        assert saved["monthlyQuota"] == 1000
        ids = await fm.record_batch([{"tenant": tenant, "feature": "embed", "tokens": 100} for _ in range(3)])
        await fm.void(tenant, ids[0])
        # The pipeline may count all three before it applies the void.
        await eventually_total(fm, tenant, 200, falling=True)
        series = await fm.timeseries(tenant, "minute", from_=datetime.now(timezone.utc) - timedelta(minutes=5))
        assert sum(point["totalTokens"] for point in series["points"]) == 200
        assert (await fm.check(tenant, 800))["allowed"] is True
        assert (await fm.check(tenant, 801))["allowed"] is False
        with pytest.raises(ApiError) as refused:
            await fm.put_tenant(tenant, monthly_quota=0)
        assert refused.value.status == 400


async def test_async_close_reports_what_it_could_not_deliver() -> None:
    with silent_server() as url:
        fm = AsyncClient(url, **stuck_settings(max_queue=3, enqueue_timeout=0.2, timeout=0.3, deadline=1))
        ids = [await fm.record("t", "f", 1)]
        await asyncio.sleep(0.1)  # the sender holds the first event
        ids += [await fm.record("t", "f", 1) for _ in range(3)]
        started = time.monotonic()
        with pytest.raises(QueueFull):
            await fm.record("t", "f", 1)
        assert time.monotonic() - started >= 0.2
        with pytest.raises(FlushError) as failed:
            await fm.close()
        assert sorted(event["id"] for event in failed.value.events) == sorted(ids)
        assert fm.stats.failed == 4
