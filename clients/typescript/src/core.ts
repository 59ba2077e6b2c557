/** What the client needs without any I/O: ids, event bodies, the retry policy, reading answers. */

import { randomBytes } from "node:crypto";

import { ApiError, LimitExceededError } from "./errors.js";
import type { EventInput, Limit, ReserveInput, Timestamp, WireEvent } from "./types.js";

/** The api takes at most this many events in one batch. */
export const MAX_BATCH = 1000;

/**
 * Answers that say "not now" rather than "no": retried with back-off. 502 and
 * 504 are what a proxy in front of the api says when it is away.
 */
export const RETRY_STATUSES: ReadonlySet<number> = new Set([429, 502, 503, 504]);

const TENANT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const FEATURE = /^[\x21-\x7e]{1,128}$/; // printable ASCII, no spaces
const EVENT_ID = /^[\x20-\x7e]{1,128}$/; // printable ASCII, spaces allowed
const MAX_TOKENS = 1_000_000_000;

/**
 * A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits.
 * Time-ordered, so the api's ledger index stays compact.
 */
export function uuid7(): string {
  const bytes = randomBytes(16);
  let ms = Date.now();
  for (let i = 5; i >= 0; i--) {
    bytes[i] = ms % 256;
    ms = Math.floor(ms / 256);
  }
  bytes[6] = 0x70 | (bytes[6]! & 0x0f);
  bytes[8] = 0x80 | (bytes[8]! & 0x3f);
  const hex = bytes.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function formatTime(value: Timestamp): string {
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw new RangeError("invalid Date");
    return value.toISOString();
  }
  return value;
}

function count(name: string, value: unknown, minimum: number): number {
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new TypeError(`${name} must be an integer, not ${JSON.stringify(value)}`);
  }
  if (value < minimum || value > MAX_TOKENS) {
    throw new RangeError(`${name} must be from ${minimum} to ${MAX_TOKENS}, not ${value}`);
  }
  return value;
}

const CLASSES = ["inputTokens", "outputTokens", "cacheReadTokens", "cacheWriteTokens"] as const;

/**
 * The wire body of one event, its id fixed now (before any send), so that
 * every retry of it is the same event and counts once. Checks the api's
 * rules that are cheap to check here, so that a bad event fails at the call
 * site instead of refusing a whole batch later. Absent fields are left out,
 * not sent as null.
 */
export function buildEvent(input: EventInput): WireEvent {
  const { tenant, feature } = input;
  if (typeof tenant !== "string" || !TENANT.test(tenant)) {
    throw new RangeError(`tenant must be 1-64 of [A-Za-z0-9._-] starting alphanumeric: ${JSON.stringify(tenant)}`);
  }
  if (typeof feature !== "string" || !FEATURE.test(feature)) {
    throw new RangeError(`feature must be 1-128 printable ASCII without spaces: ${JSON.stringify(feature)}`);
  }
  const id = input.id ?? uuid7();
  if (typeof id !== "string" || !EVENT_ID.test(id)) {
    throw new RangeError(`id must be 1-128 printable ASCII: ${JSON.stringify(id)}`);
  }
  const event: WireEvent = { id, tenant, feature };
  let sum = 0;
  let hasClasses = false;
  for (const name of CLASSES) {
    const value = input[name];
    if (value !== undefined && value !== null) {
      sum += count(name, value, 0);
      event[name] = value;
      hasClasses = true;
    }
  }
  if (input.tokens !== undefined && input.tokens !== null) {
    count("tokens", input.tokens, 1);
    if (hasClasses && input.tokens !== sum) {
      throw new RangeError(`tokens (${input.tokens}) must equal the sum of the token classes (${sum})`);
    }
    event.tokens = input.tokens;
  } else if (!hasClasses) {
    throw new TypeError("an event needs tokens, or token classes (inputTokens, ...)");
  } else if (sum < 1) {
    throw new RangeError("an event's token classes must add up to at least 1");
  }
  if (input.timestamp !== undefined) event.timestamp = formatTime(input.timestamp);
  if (input.reservationId !== undefined) event.reservationId = input.reservationId;
  return event;
}

/**
 * The body of `POST /api/reservations`; its id (the api's idempotency key)
 * is fixed here, so that a retry gets the same reservation back rather than
 * holding room twice.
 */
export function reservationBody(input: ReserveInput): Record<string, unknown> {
  const body: Record<string, unknown> = {
    tenant: input.tenant,
    tokens: count("tokens", input.tokens, 1),
    id: input.id ?? uuid7(),
  };
  for (const key of ["feature", ...CLASSES, "ttlSeconds"] as const) {
    if (input[key] !== undefined) body[key] = input[key];
  }
  return body;
}

/**
 * Jittered exponential back-off, bounded by a deadline. Attempt n (from 0)
 * waits a uniform draw from 0 to min(maxBackoffMs, initialBackoffMs·2ⁿ)
 * ("full jitter": clients that failed together do not retry together). A
 * `Retry-After` is a floor. A retry that could not start before the deadline
 * (`deadlineMs` after the first attempt) is not made.
 */
export interface RetryPolicy {
  deadlineMs: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { deadlineMs: 30_000, initialBackoffMs: 100, maxBackoffMs: 5_000 };

export function backoffMs(policy: RetryPolicy, attempt: number, retryAfterMs: number | undefined): number {
  const jitter = Math.random() * Math.min(policy.maxBackoffMs, policy.initialBackoffMs * 2 ** attempt);
  return retryAfterMs === undefined ? jitter : retryAfterMs + jitter;
}

/** `Retry-After` in milliseconds: delta-seconds or an HTTP date. */
export function parseRetryAfter(value: string | null): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const when = Date.parse(trimmed);
  return Number.isNaN(when) ? undefined : Math.max(0, when - Date.now());
}

export function decode(text: string): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The api's `{error, details}`, or the raw text when the body is not that (a proxy's page, say). */
export function apiError(status: number, text: string): ApiError {
  const body = decode(text) as { error?: unknown; details?: unknown } | undefined;
  if (body && typeof body === "object" && "error" in body) {
    return new ApiError(status, String(body.error), body.details);
  }
  return new ApiError(status, text.trim().slice(0, 500) || `HTTP ${status}`);
}

/** A reservation's 429 that is a decision (`allowed: false`), not the key's rate limit: never retried. */
export function isRefusal(status: number, text: string): boolean {
  if (status !== 429) return false;
  const body = decode(text) as { allowed?: unknown } | undefined;
  return typeof body === "object" && body !== null && body.allowed === false;
}

/** A 404 saying the route is not there (an api from before reservations answers `{"error": "not found"}`). */
export function routeMissing(err: unknown): boolean {
  return (
    err instanceof ApiError &&
    (err.status === 404 || err.status === 405) &&
    ["not found", "method not allowed"].includes(err.error.toLowerCase())
  );
}

/**
 * The refusal, from a reservation's 429 or a check's answer; `resetAt`
 * stands in when the answer names no limit (an api from before limits: quota
 * and budget reset at the period's end).
 */
export function limitExceeded(
  tenant: string,
  body: { blockedBy?: string; limits?: Limit[] },
  retryAfterMs: number | undefined,
  resetAt?: string,
): LimitExceededError {
  const limits = body.limits ?? [];
  const blockedBy = body.blockedBy ?? "quota";
  const named = limits.find((limit) => limit.kind === blockedBy)?.resetAt;
  const retryAfter = retryAfterMs === undefined ? undefined : retryAfterMs / 1000;
  return new LimitExceededError(tenant, blockedBy, named ?? resetAt, limits, retryAfter);
}
