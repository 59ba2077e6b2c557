"""The synchronous client against the real api and pipeline."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest
from settings import FAST, stuck_settings
from support import Proxy, Stack, silent_server, tenant_name, wait_for_total

from flagmeter import ApiError, Client, DeadlineExceeded, FlushError, QueueFull, RetryPolicy, uuid7


@pytest.fixture
def client(stack: Stack) -> Iterator[Client]:
    with Client(stack.url, api_key=stack.key, flush_interval=0.1, retry=FAST) as fm:
        yield fm


def test_uuid7_is_a_version_7_uuid_ordered_by_time() -> None:
    first = uuid7()
    time.sleep(0.002)
    second = uuid7()
    assert uuid.UUID(first).version == 7 and uuid.UUID(first).variant == uuid.RFC_4122
    assert first[:13] < second[:13]  # the 48-bit millisecond prefix


def test_recorded_events_are_counted_exactly_once(client: Client) -> None:
    tenant = tenant_name("py-record")
    ids = [client.record(tenant, "gpt-4o", tokens) for tokens in (100, 250, 650)]
    client.flush()

    assert len(set(ids)) == 3 and all(uuid.UUID(i).version == 7 for i in ids)
    wait_for_total(lambda: client.usage(tenant), 1000)
    assert client.stats.as_dict() == {"sent": 3, "retried": 0, "failed": 0, "queued": 0}


def test_token_classes_reach_the_usage_by_feature(client: Client) -> None:
    tenant = tenant_name("py-classes")
    client.record(tenant, "claude-sonnet-4", input_tokens=21, output_tokens=393, cache_write_tokens=1000)
    client.record(tenant, "claude-sonnet-4", input_tokens=50, output_tokens=100, cache_read_tokens=1000)
    client.flush()

    usage = wait_for_total(lambda: client.usage(tenant), 2564)
    (feature,) = usage["byFeature"]
    assert (feature["inputTokens"], feature["outputTokens"]) == (71, 493)
    assert (feature["cacheReadTokens"], feature["cacheWriteTokens"]) == (1000, 1000)


def test_an_event_sent_twice_with_one_id_counts_once(client: Client) -> None:
    tenant = tenant_name("py-idem")
    client.record(tenant, "gpt-4o", 40, id="call-1")
    client.record(tenant, "gpt-4o", 40, id="call-1")
    client.record_batch([{"tenant": tenant, "feature": "gpt-4o", "tokens": 40, "id": "call-1"}])
    client.flush()

    wait_for_total(lambda: client.usage(tenant), 40)


def test_a_voided_event_leaves_the_usage(client: Client) -> None:
    tenant = tenant_name("py-void")
    keep = client.record(tenant, "gpt-4o", 70)
    drop = client.record(tenant, "gpt-4o", 30)
    client.flush()
    wait_for_total(lambda: client.usage(tenant), 100)

    client.void(tenant, drop)

    wait_for_total(lambda: client.usage(tenant), 70, falling=True)
    assert keep != drop


def test_record_batch_sends_more_than_a_thousand_events_in_chunks(client: Client) -> None:
    tenant = tenant_name("py-batch")
    events = [{"tenant": tenant, "feature": "embed", "tokens": 2} for _ in range(2500)]

    ids = client.record_batch(events)

    assert len(ids) == 2500 and len(set(ids)) == 2500
    wait_for_total(lambda: client.usage(tenant), 5000)


def test_the_time_series_and_the_check_read_what_was_counted(client: Client) -> None:
    tenant = tenant_name("py-reads")
    client.put_tenant(tenant, name="Reads Inc", monthly_quota=1000, timezone="Europe/Paris")
    client.record(tenant, "gpt-4o", 600, timestamp=datetime.now(timezone.utc) - timedelta(minutes=1))
    client.flush()
    wait_for_total(lambda: client.usage(tenant), 600)

    series = client.timeseries(tenant, "minute", from_=datetime.now(timezone.utc) - timedelta(minutes=10))
    assert sum(point["totalTokens"] for point in series["points"]) == 600
    assert client.timeseries(tenant, "day", feature="other")["points"][-1]["totalTokens"] == 0
    assert client.check(tenant, 400)["allowed"] is True
    assert client.check(tenant, 401)["allowed"] is False


def test_put_tenant_sends_only_the_settings_given(client: Client) -> None:
    tenant = tenant_name("py-tenant")
    created = client.put_tenant(tenant, monthly_quota=5000, monthly_budget="12.50", alert_thresholds=[50, 90])
    assert (created["monthlyQuota"], created["monthlyBudget"], created["alertThresholds"]) == (
        5000,
        "12.500000",
        [50, 90],
    )

    updated = client.put_tenant(tenant, monthly_quota=6000)
    assert updated["monthlyBudget"] == "12.500000" and updated["alertThresholds"] == [50, 90]

    removed = client.put_tenant(tenant, monthly_quota=6000, monthly_budget=None)
    assert removed.get("monthlyBudget") is None


def test_a_refusal_raises_the_servers_error_and_details(client: Client, stack: Stack) -> None:
    with pytest.raises(ApiError) as refused:
        client.put_tenant(tenant_name("py-err"), monthly_quota=10, timezone="Mars/Olympus_Mons")
    assert refused.value.status == 400
    assert refused.value.details["field"] == "timezone"

    with Client(stack.url, api_key="fmk_wrong_" + "0" * 40, retry=FAST) as stranger:
        with pytest.raises(ApiError) as unauthorized:
            stranger.usage("anyone")
    assert unauthorized.value.status == 401 and "API key" in unauthorized.value.error

    with pytest.raises(ApiError) as unknown:
        client.usage(tenant_name("py-never-seen"))
    assert unknown.value.status == 404 and unknown.value.error == "unknown tenant"


def test_an_event_the_api_would_refuse_fails_at_the_call_site(client: Client) -> None:
    with pytest.raises(ValueError, match="tenant"):
        client.record("-bad", "gpt-4o", 1)
    with pytest.raises(ValueError, match="feature"):
        client.record("ok", "has space", 1)
    with pytest.raises(ValueError, match="needs tokens"):
        client.record("ok", "gpt-4o")
    with pytest.raises(ValueError, match="must equal"):
        client.record("ok", "gpt-4o", 10, input_tokens=3, output_tokens=3)
    with pytest.raises(ValueError, match="timezone-aware"):
        client.record("ok", "gpt-4o", 1, timestamp=datetime.now())


def test_one_bad_event_in_a_batch_fails_alone_and_is_reported(client: Client) -> None:
    tenant = tenant_name("py-poison")
    for _ in range(10):
        client.record(tenant, "gpt-4o", 5)
    # Passes the local checks, but the api keeps events at most 35 days back.
    old = client.record(tenant, "gpt-4o", 7, timestamp=datetime.now(timezone.utc) - timedelta(days=40))
    for _ in range(5):
        client.record(tenant, "gpt-4o", 5)

    with pytest.raises(FlushError) as failed:
        client.flush()

    assert [event["id"] for event in failed.value.events] == [old]
    assert isinstance(failed.value.failures[0][0], ApiError)
    assert client.stats.failed == 1 and client.stats.sent == 15
    wait_for_total(lambda: client.usage(tenant), 75)
    client.flush()  # the failure was reported once, and is not raised again


def test_retry_after_is_honoured(stack: Stack) -> None:
    tenant = tenant_name("py-retry-after")

    def first_batch_throttled(n: int, method: str, path: str):  # type: ignore[no-untyped-def]
        return ("refuse", 429, 1) if n == 1 else None

    with Proxy(stack.url, first_batch_throttled) as proxy:
        with Client(proxy.url, api_key=stack.key, retry=FAST) as fm:
            started = time.monotonic()
            fm.record_batch([{"tenant": tenant, "feature": "gpt-4o", "tokens": 9}])
            elapsed = time.monotonic() - started
            assert proxy.refused == 1 and fm.stats.retried == 1
            assert elapsed >= 1.0
            wait_for_total(lambda: fm.usage(tenant), 9)


def test_a_request_that_keeps_failing_gives_up_at_its_deadline(stack: Stack) -> None:
    with Proxy(stack.url, lambda n, method, path: ("refuse", 503, 0)) as proxy:
        with Client(proxy.url, api_key=stack.key, retry=RetryPolicy(deadline=1, initial_backoff=0.05)) as fm:
            started = time.monotonic()
            with pytest.raises(DeadlineExceeded) as gave_up:
                fm.check("anyone")
            assert time.monotonic() - started < 2
            assert isinstance(gave_up.value.last_error, ApiError) and gave_up.value.last_error.status == 503
            assert proxy.refused > 2


def test_a_full_queue_makes_record_wait_then_raise_and_nothing_is_dropped() -> None:
    with silent_server() as url:
        fm = Client(url, **stuck_settings(max_queue=5, enqueue_timeout=0.3, timeout=0.5, deadline=1.5))
        ids = [fm.record("t", "f", 1)]
        time.sleep(0.2)  # the sender has taken the first event and waits on the silent server
        ids += [fm.record("t", "f", 1) for _ in range(5)]
        started = time.monotonic()
        with pytest.raises(QueueFull):
            fm.record("t", "f", 1)
        assert time.monotonic() - started >= 0.3

        with pytest.raises(FlushError) as failed:
            fm.close()
        assert sorted(event["id"] for event in failed.value.events) == sorted(ids)
        assert fm.stats.failed == 6 and fm.stats.sent == 0


def test_records_from_many_threads_are_all_counted(client: Client) -> None:
    tenant = tenant_name("py-threads")

    def work() -> None:
        for _ in range(250):
            client.record(tenant, "gpt-4o", 3)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.flush()

    wait_for_total(lambda: client.usage(tenant), 8 * 250 * 3)
    assert client.stats.sent == 2000
