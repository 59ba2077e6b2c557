"""A client generated from the served spec works (issue 30, point 5).

openapi-python-client (pinned in requirements.txt) generates a package from
the running api's ``/openapi.json``; the test then uses it as a user would:
set a tenant's quota and thresholds, post events past a threshold, read
usage, a time series and the alert history, each answer parsed into the
generated models. A route or a schema the generator cannot read (a missing
``operationId``, a reference behind ``allOf``) fails here.

The api and pipeline are the ones clients/python's tests start
(tests/support.py), on loopback ports over a throwaway database and stream.
"""

from __future__ import annotations

import datetime
import importlib
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python" / "tests"))
import conftest  # noqa: E402
from support import Stack, tenant_name  # noqa: E402

PACKAGE = "flagmeter_generated"

# The Python suite's api and pipeline, as a fixture of this module too.
stack = conftest.stack


@pytest.fixture(scope="session")
def generated(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    out = tmp_path_factory.mktemp("generated")
    spec = out / "openapi.json"
    spec.write_bytes(httpx.get(f"{stack.url}/openapi.json").raise_for_status().content)
    generator = Path(sys.executable).parent / "openapi-python-client"
    run = subprocess.run(
        [str(generator), "generate", "--path", str(spec), "--output-path", str(out / PACKAGE), "--meta", "none"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))


def module(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_a_generated_client_posts_events_and_reads_usage_series_and_alerts(stack: Stack, generated: ModuleType) -> None:
    models = module("models")
    client = generated.AuthenticatedClient(base_url=stack.url, token=stack.key, raise_on_unexpected_status=True)
    tenant = tenant_name("generated")

    put = module("api.tenants.put_tenant").sync_detailed(
        tenant, client=client, body=models.TenantIn(monthly_quota=1_000, alert_thresholds=[50])
    )
    assert put.status_code in (200, 201), put.content

    record = module("api.events.record_event")
    for tokens in (300, 400):
        accepted = record.sync_detailed(
            client=client, body=models.EventIn(tenant=tenant, feature="gpt-4o", input_tokens=tokens, output_tokens=0)
        )
        assert accepted.status_code == 202, accepted.content
        assert isinstance(accepted.parsed, models.EventAccepted)

    get_usage = module("api.usage.get_usage")
    deadline = time.monotonic() + 30
    usage = get_usage.sync(tenant, client=client)
    while usage.total_tokens < 700 and time.monotonic() < deadline:
        time.sleep(0.2)
        usage = get_usage.sync(tenant, client=client)
    assert isinstance(usage, models.TenantUsage)
    assert (usage.total_tokens, usage.monthly_quota) == (700, 1_000)
    assert [(f.feature, f.total_tokens) for f in usage.by_feature] == [("gpt-4o", 700)]

    now = datetime.datetime.now(datetime.timezone.utc)
    series = module("api.usage.get_timeseries").sync(
        tenant,
        client=client,
        granularity=models.GranularityParam.HOUR,
        from_=now - datetime.timedelta(hours=2),
        to=now + datetime.timedelta(hours=1),
    )
    assert isinstance(series, models.TimeSeries)
    assert sum(point.total_tokens for point in series.points) == 700

    list_alerts = module("api.tenants.list_alerts")
    alerts = list_alerts.sync(tenant, client=client)
    while not alerts and time.monotonic() < deadline:
        time.sleep(0.2)
        alerts = list_alerts.sync(tenant, client=client)
    assert isinstance(alerts, list) and len(alerts) == 1
    alert = alerts[0]
    assert isinstance(alert, models.Alert)
    assert (alert.kind, alert.threshold, alert.quota) == (models.AlertKind.QUOTA, 50, 1_000)
    assert alert.status == models.AlertStatus.NO_WEBHOOK
