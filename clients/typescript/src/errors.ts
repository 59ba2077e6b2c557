/** The errors a FlagMeter client throws: one base class, one type per way to fail. */

import type { Limit, WireEvent } from "./types.js";

/** Base class of every error thrown by this package. */
export class FlagMeterError extends Error {
  override name = "FlagMeterError";
}

/**
 * The api refused the request with a status that a retry cannot change (a
 * 4xx other than 429, or a 5xx other than 502/503/504). `error` and
 * `details` are the server's own words (its body `{error, details}`).
 */
export class ApiError extends FlagMeterError {
  override name = "ApiError";
  constructor(
    readonly status: number,
    readonly error: string,
    readonly details?: unknown,
  ) {
    super(`${status} ${error}${details === undefined ? "" : `: ${JSON.stringify(details)}`}`);
  }
}

/**
 * The request kept failing in a retryable way (connection error, timeout,
 * 429, 502, 503, 504) until its deadline passed. `lastError` is the last
 * failure: an `ApiError` for an answer, or fetch's error.
 */
export class DeadlineExceededError extends FlagMeterError {
  override name = "DeadlineExceededError";
  constructor(
    message: string,
    readonly lastError: unknown,
  ) {
    super(`${message}; last error: ${String(lastError)}`, { cause: lastError });
  }
}

/** `record` found the bounded queue full: the api is slower than the caller (or down). */
export class QueueFullError extends FlagMeterError {
  override name = "QueueFullError";
}

/** One batch given up on, with its events (wire bodies, ids included). */
export interface Failure {
  error: unknown;
  events: WireEvent[];
}

/** Queued events that could not be delivered since the last flush; `events` can be sent again as they are. */
export class FlushError extends FlagMeterError {
  override name = "FlushError";
  constructor(readonly failures: Failure[]) {
    const count = failures.reduce((sum, failure) => sum + failure.events.length, 0);
    super(`${count} event(s) could not be delivered; first error: ${String(failures[0]?.error)}`);
  }

  get events(): WireEvent[] {
    return this.failures.flatMap((failure) => failure.events);
  }
}

/**
 * A reservation (or, on an api without reservations, the check) was refused.
 * `blockedBy` is the kind of limit that refused (`quota`, `budget`,
 * `tokensPerMinute`, `requestsPerMinute`), `resetAt` when it has room again
 * (RFC 3339; undefined when the api did not say), `retryAfter` the api's
 * `Retry-After` in seconds, `limits` every limit that applies.
 */
export class LimitExceededError extends FlagMeterError {
  override name = "LimitExceededError";
  constructor(
    readonly tenant: string,
    readonly blockedBy: string,
    readonly resetAt: string | undefined,
    readonly limits: Limit[] = [],
    readonly retryAfter?: number,
  ) {
    super(`tenant ${JSON.stringify(tenant)}: ${blockedBy} limit reached${resetAt ? `; resets at ${resetAt}` : ""}`);
  }
}
