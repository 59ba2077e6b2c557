/**
 * Token classes read from a provider's response.
 *
 * Each provider counts cached and reasoning tokens its own way; getting it
 * wrong bills a cached token twice or not at all. These functions map a
 * response's usage to FlagMeter's four classes, which never overlap (the
 * table is in the package's README):
 *
 * - OpenAI (Chat Completions and Responses): the prompt count
 *   (`prompt_tokens` / `input_tokens`) *includes* its details'
 *   `cached_tokens` and `cache_write_tokens`, so input = prompt − cached −
 *   cache write; output = `completion_tokens` / `output_tokens`, reasoning
 *   tokens included (billed as output).
 * - Anthropic Messages: `input_tokens` *excludes* both cache classes, so
 *   each field maps as it is.
 *
 * Each takes a whole response, the usage object itself, a Chat Completions
 * stream's last chunk (with `stream_options: { include_usage: true }`), a
 * Responses stream's `response.completed` event, or an Anthropic stream's
 * `message_delta` event (its usage is cumulative) or final message.
 */

import type { TokenUsage } from "./types.js";

type Loose = Record<string, unknown> | null | undefined;

function get(obj: unknown, name: string): unknown {
  return obj !== null && typeof obj === "object" ? (obj as Record<string, unknown>)[name] : undefined;
}

function has(obj: unknown, name: string): boolean {
  return obj !== null && typeof obj === "object" && name in obj;
}

function int(usage: unknown, name: string, required = false): number {
  const value = get(usage, name);
  if (value === undefined || value === null) {
    if (required) throw new TypeError(`usage has no ${name}`);
    return 0;
  }
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw new TypeError(`usage ${name} must be a non-negative integer, not ${JSON.stringify(value)}`);
  }
  return value;
}

/** The usage object: the response's `usage`, that of the response or message a stream event wraps, or the response itself. */
function findUsage(response: unknown, ...fields: string[]): Loose {
  for (const holder of [response, get(response, "response"), get(response, "message")]) {
    const usage = get(holder, "usage");
    if (usage !== undefined && usage !== null) return usage as Loose;
  }
  if (fields.some((field) => get(response, field) !== undefined && get(response, field) !== null)) {
    return response as Loose;
  }
  throw new TypeError(
    "no usage in this response: a stream carries it only in its last chunk " +
      "(OpenAI: stream_options: { include_usage: true }; Anthropic: message_delta or the final message)",
  );
}

function openai(usage: Loose): TokenUsage {
  const chat = get(usage, "prompt_tokens") !== undefined && get(usage, "prompt_tokens") !== null;
  const prompt = int(usage, chat ? "prompt_tokens" : "input_tokens", true);
  const details = get(usage, chat ? "prompt_tokens_details" : "input_tokens_details");
  const output = int(usage, chat ? "completion_tokens" : "output_tokens");
  // Both cache counts are a breakdown of the prompt, not added to it.
  const cached = int(details, "cached_tokens");
  const written = int(details, "cache_write_tokens");
  if (cached + written > prompt) {
    throw new RangeError(`cached tokens (${cached} read, ${written} written) exceed the prompt's (${prompt})`);
  }
  return { inputTokens: prompt - cached - written, outputTokens: output, cacheReadTokens: cached, cacheWriteTokens: written };
}

function anthropic(usage: Loose): TokenUsage {
  return {
    inputTokens: int(usage, "input_tokens"),
    outputTokens: int(usage, "output_tokens"),
    cacheReadTokens: int(usage, "cache_read_input_tokens"),
    cacheWriteTokens: int(usage, "cache_creation_input_tokens"),
  };
}

/** Token classes of an OpenAI Chat Completions or Responses answer. */
export function usageFromOpenAI(response: unknown): TokenUsage {
  return openai(findUsage(response, "prompt_tokens", "input_tokens"));
}

/** Token classes of an Anthropic Messages answer. */
export function usageFromAnthropic(response: unknown): TokenUsage {
  return anthropic(findUsage(response, "input_tokens", "output_tokens"));
}

/**
 * Either provider's answer, told apart by its usage's fields: Chat Completions
 * has `prompt_tokens`, the Responses API `input_tokens_details`; anything else
 * is read as Anthropic's (plain `input_tokens` and `output_tokens` map the same
 * either way).
 */
export function usageFromResponse(response: unknown): TokenUsage {
  const usage = findUsage(response, "prompt_tokens", "input_tokens", "output_tokens");
  return has(usage, "prompt_tokens") || has(usage, "input_tokens_details") ? openai(usage) : anthropic(usage);
}
