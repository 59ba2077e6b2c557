"""``client.call(...)``: reserve, call the model, record with the
reservation (or release it).

Against the real api: the reservation routes when it has them (issue 28),
else the check it falls back on. Until the api has them, a stand-in that
answers POST/DELETE /api/reservations as the contract says (events still go
to the real api) checks the client's side of that contract."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, Optional

import pytest
from settings import FAST
from support import Proxy, Stack, tenant_name, wait_for_total

from flagmeter import AsyncClient, Client, LimitExceeded

GOLDEN = Path(__file__).resolve().parents[2] / "testdata" / "providers"


def golden(name: str) -> Dict[str, Any]:
    return json.loads((GOLDEN / f"{name}.json").read_text())


def in_a_minute() -> str:
    return (datetime.now(timezone.utc) + timedelta(minutes=1)).isoformat()


def reservations_stand_in(refuse: Optional[Dict[str, Any]] = None, retry_after: int = 12):  # type: ignore[no-untyped-def]
    """Answers the reservation routes per the contract; the rest goes on."""
    granted = 0

    def fault(n: int, method: str, path: str):  # type: ignore[no-untyped-def]
        nonlocal granted
        if method == "POST" and path == "/api/reservations":
            if refuse is not None:
                return ("answer", 429, refuse, {"retry-after": str(retry_after)})
            granted += 1
            limits = [
                {
                    "kind": "quota",
                    "limit": 1_000_000,
                    "used": 0,
                    "reserved": 3000,
                    "remaining": 997_000,
                    "resetAt": "2030-01-01T00:00:00Z",
                }
            ]
            body = {"reservationId": f"res-{granted}", "allowed": True, "expiresAt": in_a_minute(), "limits": limits}
            return ("answer", 201, body, {})
        if method == "DELETE" and path.startswith("/api/reservations/"):
            return ("answer", 204, None, {})
        return None

    return fault


def test_a_call_reserves_then_records_the_providers_usage_with_the_reservation(stack: Stack) -> None:
    tenant = tenant_name("py-call")
    with Proxy(stack.url, reservations_stand_in()) as proxy:
        with Client(proxy.url, api_key=stack.key, flush_interval=0.05, retry=FAST) as fm:
            with fm.call(tenant, "gpt-4o", estimate_tokens=3000) as call:
                assert call.reservation_id == "res-1"
                event_id = call.record(golden("openai_chat_completion_cached")["response"])
            fm.flush()
            usage = wait_for_total(lambda: fm.usage(tenant), 2306)

    reserve = next(body for method, path, body in proxy.seen if path == "/api/reservations")
    assert reserve["tenant"] == tenant and reserve["tokens"] == 3000 and reserve["feature"] == "gpt-4o"
    assert reserve["id"]  # an idempotency key, so that a retry holds nothing twice
    (sent,) = [e for _, path, body in proxy.seen if path == "/api/events/batch" for e in body["events"]]
    assert sent["id"] == event_id and sent["reservationId"] == "res-1"
    assert not any(method == "DELETE" for method, _, _ in proxy.seen)
    feature = usage["byFeature"][0]
    assert (feature["inputTokens"], feature["cacheReadTokens"], feature["outputTokens"]) == (86, 1920, 300)


def test_an_exception_in_the_block_releases_the_reservation(stack: Stack) -> None:
    with Proxy(stack.url, reservations_stand_in()) as proxy:
        with Client(proxy.url, api_key=stack.key, retry=FAST) as fm:
            with pytest.raises(TimeoutError):
                with fm.call(tenant_name("py-call-fail"), "gpt-4o", estimate_tokens=500):
                    raise TimeoutError("the model did not answer")
    assert ("DELETE", "/api/reservations/res-1", None) in proxy.seen
    assert not any(path.startswith("/api/events") for _, path, _ in proxy.seen)


def test_a_refused_reservation_raises_limit_exceeded_naming_the_limit_once(stack: Stack) -> None:
    refusal = {
        "allowed": False,
        "blockedBy": "tokensPerMinute",
        "limits": [
            {
                "kind": "quota",
                "limit": 100000,
                "used": 5000,
                "reserved": 0,
                "remaining": 95000,
                "resetAt": "2030-01-01T00:00:00Z",
            },
            {
                "kind": "tokensPerMinute",
                "limit": 1000,
                "used": 900,
                "reserved": 100,
                "remaining": 0,
                "resetAt": "2029-06-01T12:00:12Z",
            },
        ],
    }
    with Proxy(stack.url, reservations_stand_in(refuse=refusal)) as proxy:
        with Client(proxy.url, api_key=stack.key, retry=FAST) as fm:
            with pytest.raises(LimitExceeded) as refused:
                with fm.call("acme", "gpt-4o", estimate_tokens=500):
                    pytest.fail("the block must not run when refused")
    assert refused.value.blocked_by == "tokensPerMinute"
    assert refused.value.reset_at == "2029-06-01T12:00:12Z"
    assert refused.value.retry_after == 12 and len(refused.value.limits) == 2
    assert "tokensPerMinute" in str(refused.value) and "2029-06-01T12:00:12Z" in str(refused.value)
    # A refusal is a decision, not a "try again later": it is not retried.
    assert sum(path == "/api/reservations" for _, path, _ in proxy.seen) == 1


async def test_the_async_call_reserves_records_and_releases(stack: Stack) -> None:
    tenant = tenant_name("py-acall")
    with Proxy(stack.url, reservations_stand_in()) as proxy:
        async with AsyncClient(proxy.url, api_key=stack.key, flush_interval=0.05, retry=FAST) as fm:
            async with fm.call(tenant, "claude-sonnet-4", estimate_tokens=200_000) as call:
                await call.record(golden("anthropic_message_cache_write")["response"])
            with pytest.raises(ValueError):
                async with fm.call(tenant, "claude-sonnet-4", estimate_tokens=10):
                    raise ValueError("bad prompt")
            await fm.flush()
    assert ("DELETE", "/api/reservations/res-2", None) in proxy.seen
    with Client(stack.url, api_key=stack.key) as reader:
        wait_for_total(lambda: reader.usage(tenant), 21 + 393 + 188086)


# -- the real api --------------------------------------------------------------


def test_without_reservation_routes_a_call_falls_back_on_the_check(stack: Stack, has_reservations: bool) -> None:
    if has_reservations:
        pytest.skip("the api has reservations: the fallback is not used")
    tenant = tenant_name("py-call-check")
    with Client(stack.url, api_key=stack.key, flush_interval=0.05, retry=FAST) as fm:
        fm.put_tenant(tenant, monthly_quota=1000)
        with fm.call(tenant, "claude-3-5-haiku", estimate_tokens=900) as call:
            assert call.reservation_id is None
            call.record(input_tokens=400, output_tokens=200)
        fm.flush()
        wait_for_total(lambda: fm.usage(tenant), 600)

        with pytest.raises(LimitExceeded) as refused:
            with fm.call(tenant, "claude-3-5-haiku", estimate_tokens=401):
                pytest.fail("the block must not run when refused")
        assert refused.value.blocked_by == "quota"
        assert refused.value.reset_at == fm.usage(tenant)["periodEnd"]


def test_real_reservations_hold_room_until_recorded_or_released(stack: Stack, has_reservations: bool) -> None:
    if not has_reservations:
        pytest.skip("the api has no reservation routes yet (issue 28)")
    tenant = tenant_name("py-reserve")
    with Client(stack.url, api_key=stack.key, flush_interval=0.05, retry=FAST) as fm:
        fm.put_tenant(tenant, monthly_quota=10_000)
        held = fm.reserve(tenant, 6000, feature="gpt-4o")
        assert held["allowed"] is True and held["reservationId"]
        with pytest.raises(LimitExceeded) as refused:
            fm.reserve(tenant, 6000)
        assert refused.value.blocked_by == "quota" and refused.value.reset_at

        fm.release(held["reservationId"])
        fm.release(held["reservationId"])  # idempotent
        with fm.call(tenant, "gpt-4o", estimate_tokens=6000) as call:
            assert call.reservation_id
            call.record(golden("openai_responses")["response"])
        with pytest.raises(RuntimeError):
            with fm.call(tenant, "gpt-4o", estimate_tokens=9000):
                raise RuntimeError("released on the way out")
        fm.flush()
        wait_for_total(lambda: fm.usage(tenant), 380)
        assert fm.reserve(tenant, 9000)["allowed"] is True
