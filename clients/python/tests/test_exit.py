"""Events still queued when the interpreter exits, without close(), are
sent then: by the sync client's exit hook, and for the async client (whose
loop is gone by then) through a synchronous client."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from support import Stack, tenant_name, wait_for_total

from flagmeter import Client


def run(code: str) -> None:
    subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True, timeout=60)


def test_the_sync_client_sends_its_queue_at_interpreter_exit(stack: Stack) -> None:
    tenant = tenant_name("py-exit")
    run(f"""
        import flagmeter
        fm = flagmeter.Client({stack.url!r}, api_key={stack.key!r}, flush_interval=3600)
        for _ in range(300):
            fm.record({tenant!r}, "gpt-4o", 3)
    """)
    with Client(stack.url, api_key=stack.key) as reader:
        wait_for_total(lambda: reader.usage(tenant), 900)


def test_the_async_client_sends_its_queue_at_interpreter_exit(stack: Stack) -> None:
    tenant = tenant_name("py-exit-async")
    run(f"""
        import asyncio, flagmeter
        async def main():
            fm = flagmeter.AsyncClient({stack.url!r}, api_key={stack.key!r}, flush_interval=3600)
            for _ in range(1500):
                await fm.record({tenant!r}, "gpt-4o", 2)
        asyncio.run(main())
    """)
    with Client(stack.url, api_key=stack.key) as reader:
        wait_for_total(lambda: reader.usage(tenant), 3000)
