// Golden tests of the provider mappings: the response bodies written from
// each provider's documented schema (clients/testdata/providers, shared with
// the Python client).

import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { test } from "node:test";

import { usageFromAnthropic, usageFromOpenAI, usageFromResponse } from "flagmeter";
import { GOLDEN, golden } from "./support.mjs";

const cases = readdirSync(GOLDEN)
  .filter((name) => name.endsWith(".json"))
  .map((name) => name.slice(0, -5))
  .sort();
const mappers = { openai: usageFromOpenAI, anthropic: usageFromAnthropic };
const camel = (expected) => ({
  inputTokens: expected.input_tokens,
  outputTokens: expected.output_tokens,
  cacheReadTokens: expected.cache_read_tokens,
  cacheWriteTokens: expected.cache_write_tokens,
});

test("there are golden bodies for both providers", () => {
  assert.deepEqual(new Set(cases.map((name) => golden(name).provider)), new Set(["openai", "anthropic"]));
  assert.ok(cases.length >= 10);
});

for (const name of cases) {
  test(`${name} maps to its golden classes`, () => {
    const { provider, response, expected } = golden(name);
    assert.deepEqual(mappers[provider](response), camel(expected));
    assert.deepEqual(usageFromResponse(response), camel(expected));
    const usage = response.usage ?? response.response.usage;
    assert.deepEqual(mappers[provider](usage), camel(expected), "the usage object alone maps the same");
  });
}

test("a stream chunk without usage says how to get it", () => {
  const chunk = { object: "chat.completion.chunk", choices: [{ delta: { content: "Hi" } }], usage: null };
  assert.throws(() => usageFromOpenAI(chunk), /include_usage/);
});

test("more cached than prompt tokens is refused", () => {
  const usage = { prompt_tokens: 10, completion_tokens: 1, prompt_tokens_details: { cached_tokens: 11 } };
  assert.throws(() => usageFromOpenAI(usage), /exceed/);
});

test("a negative or non-integer count is refused", () => {
  assert.throws(() => usageFromAnthropic({ input_tokens: -1, output_tokens: 3 }), TypeError);
  assert.throws(() => usageFromAnthropic({ input_tokens: "12", output_tokens: 3 }), TypeError);
  assert.throws(() => usageFromAnthropic({ input_tokens: 1.5, output_tokens: 3 }), TypeError);
});
