// Done when: a client that loses every fourth answer after the api stored the
// batch (the proxy forwards it, then drops the real answer and says 503)
// still ends with exact totals.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Client } from "flagmeter";
import { everyFourthAnswerLost, startProxy, startStack, tenantName, waitForTotal } from "./support.mjs";

const FAST = { deadlineMs: 20_000, initialBackoffMs: 10, maxBackoffMs: 200 };
let stack;

before(async () => {
  stack = await startStack();
});
after(() => stack?.stop());

/** A small deterministic generator, so that a failure can be replayed. */
function random(seed) {
  return () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
}

test("lost answers do not double-count queued events", async () => {
  const tenant = tenantName("ts-lossy");
  const next = random(7);
  const proxy = await startProxy(stack.url, everyFourthAnswerLost);
  try {
    const fm = new Client({ baseUrl: proxy.url, apiKey: stack.key, batchSize: 50, flushIntervalMs: 20, retry: FAST });
    let recorded = 0;
    for (let n = 0; n < 2000; n++) {
      const tokens = 1 + Math.floor(next() * 5000);
      if (n % 3) {
        fm.record({ tenant, feature: "gpt-4o", tokens });
        recorded += tokens;
      } else {
        fm.record({ tenant, feature: "gpt-4o", inputTokens: tokens, outputTokens: 7, cacheReadTokens: 1 });
        recorded += tokens + 8;
      }
      if (n % 100 === 99) await new Promise((ok) => setImmediate(ok)); // let batches go out meanwhile
    }
    await fm.close();
    assert.ok(proxy.lost >= 10, "the proxy lost no answer: the test tests nothing");
    // Each lost answer is one batch re-sent: its events count as retried.
    assert.deepEqual([fm.stats.sent, fm.stats.failed], [2000, 0]);
    assert.ok(fm.stats.retried >= proxy.lost);
    const reader = new Client({ baseUrl: stack.url, apiKey: stack.key });
    const usage = await waitForTotal(() => reader.usage(tenant), recorded);
    assert.equal(usage.totalTokens, recorded);
  } finally {
    await proxy.close();
  }
});

test("lost answers do not double-count batches", async () => {
  const tenant = tenantName("ts-lossy-batch");
  const proxy = await startProxy(stack.url, everyFourthAnswerLost);
  try {
    const fm = new Client({ baseUrl: proxy.url, apiKey: stack.key, retry: FAST });
    let recorded = 0;
    for (let round = 0; round < 12; round++) {
      await fm.recordBatch(Array.from({ length: 100 }, () => ({ tenant, feature: "claude", tokens: 10 + round })));
      recorded += 100 * (10 + round);
    }
    assert.equal(proxy.lost, 3);
    const usage = await waitForTotal(() => fm.usage(tenant), recorded);
    assert.equal(usage.totalTokens, recorded);
  } finally {
    await proxy.close();
  }
});
