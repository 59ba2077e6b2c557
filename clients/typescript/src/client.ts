/** The client: typed calls, retries, and a queue sent in batches. */

import {
  DEFAULT_RETRY,
  MAX_BATCH,
  RETRY_STATUSES,
  apiError,
  backoffMs,
  buildEvent,
  formatTime,
  isRefusal,
  limitExceeded,
  parseRetryAfter,
  reservationBody,
  routeMissing,
  type RetryPolicy,
} from "./core.js";
import { ApiError, FlagMeterError, FlushError, QueueFullError, DeadlineExceededError, type Failure } from "./errors.js";
import { usageFromResponse } from "./providers.js";
import type {
  Check,
  EventInput,
  ReserveInput,
  Reservation,
  Stats,
  Tenant,
  TenantSettings,
  Timeseries,
  TimeseriesQuery,
  Timestamp,
  TokenUsage,
  Usage,
  WireEvent,
} from "./types.js";

export interface ClientOptions {
  /** The api's address, e.g. `http://127.0.0.1:3000` (default: `FLAGMETER_URL`). */
  baseUrl?: string;
  /** An API key (default: `FLAGMETER_API_KEY`). */
  apiKey?: string;
  /** Time limit of one attempt, in ms (default 10,000). */
  timeoutMs?: number;
  /** Back-off and deadline of the retries (defaults: 30 s deadline, 100 ms initial, 5 s cap). */
  retry?: Partial<RetryPolicy>;
  /** Events per batch, at most 1,000 (the default). */
  batchSize?: number;
  /** How long a queued event may wait before its batch is sent, in ms (default 1,000). */
  flushIntervalMs?: number;
  /** The queue's bound (default 100,000): `record` throws `QueueFullError` beyond it. */
  maxQueue?: number;
  /** Called with each batch given up on (default: `console.error`). */
  onError?: (error: unknown, events: WireEvent[]) => void;
  /** A `fetch` to use instead of the global one. */
  fetch?: typeof fetch;
}

export interface CallOptions {
  tenant: string;
  feature: string;
  /** The call's estimate: prompt + max output tokens. */
  estimateTokens: number;
  ttlSeconds?: number;
}

/** Explicit counts for `Call.recordTokens`. */
export interface CallTokens extends Partial<TokenUsage> {
  tokens?: number;
  id?: string;
  timestamp?: Timestamp;
}

interface Answer {
  status: number;
  headers: Headers;
  text: string;
}

interface RequestOptions {
  body?: unknown;
  query?: Record<string, string>;
  /** Events a retry re-sends, for the counters. */
  weight?: number;
  /** Return a reservation's refusal (429 `allowed: false`) instead of retrying it. */
  refusalOk?: boolean;
}

/**
 * A failure worth another attempt: fetch's network errors (a `TypeError`:
 * connection refused or reset, body cut off) and its timeout. Anything else
 * is a mistake on this side and would fail the same way again.
 */
function transient(err: unknown): boolean {
  const name = (err as { name?: unknown } | null)?.name;
  return err instanceof TypeError || name === "TimeoutError" || name === "AbortError";
}

/** Node's `process`, looked up rather than assumed: where there is none, there is no exit hook. */
const nodeProcess = (globalThis as { process?: NodeJS.Process }).process;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const segment = (value: string) => encodeURIComponent(value);

/**
 * A FlagMeter client.
 *
 * `record` queues an event and returns its id at once; the queue is sent in
 * batches of up to `batchSize` events when a batch is full, when the oldest
 * queued event has waited `flushIntervalMs`, at `flush()`, at `close()`, and
 * when the process has nothing else to do before it exits (`beforeExit`; an
 * explicit `process.exit()` skips it: `await close()` first). Every request
 * is retried on connection errors, timeouts, 429, 502, 503 and 504.
 */
export class Client {
  readonly baseUrl: string;
  readonly stats: Stats = { sent: 0, retried: 0, failed: 0, queued: 0 };

  readonly #apiKey: string | undefined;
  readonly #timeoutMs: number;
  readonly #retry: RetryPolicy;
  readonly #batchSize: number;
  readonly #flushIntervalMs: number;
  readonly #maxQueue: number;
  readonly #onError: ((error: unknown, events: WireEvent[]) => void) | undefined;
  readonly #fetch: typeof fetch;
  #pending: WireEvent[] = [];
  /** Batches given up on since the last flush, for flush() to throw. */
  #failures: Failure[] = [];
  /** The one drain in progress: batches go out one at a time, in order. */
  #draining: Promise<void> | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  /** Whether the api has the reservation routes; undefined until asked. */
  #reservations: boolean | undefined;
  /** This client's entry in the exit hook's list, dropped at close(). */
  readonly #ref = new WeakRef(this);

  constructor(options: ClientOptions = {}) {
    const baseUrl = options.baseUrl ?? nodeProcess?.env.FLAGMETER_URL;
    if (!baseUrl) throw new TypeError("baseUrl is required (or set FLAGMETER_URL)");
    new URL(baseUrl); // throws now on a malformed address, not at the first send
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.#apiKey = options.apiKey ?? nodeProcess?.env.FLAGMETER_API_KEY;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#retry = { ...DEFAULT_RETRY, ...options.retry };
    this.#batchSize = options.batchSize ?? MAX_BATCH;
    if (!(this.#batchSize >= 1 && this.#batchSize <= MAX_BATCH)) {
      throw new RangeError(`batchSize must be from 1 to ${MAX_BATCH}`);
    }
    this.#flushIntervalMs = options.flushIntervalMs ?? 1_000;
    this.#maxQueue = options.maxQueue ?? 100_000;
    this.#onError = options.onError;
    this.#fetch = options.fetch ?? globalThis.fetch;
    Client.#watch(this);
  }

  // -- requests ---------------------------------------------------------------

  /** One request, retried until it succeeds, fails for good, or the deadline passes. */
  async #request(method: string, path: string, options: RequestOptions = {}): Promise<Answer> {
    const url = new URL(this.baseUrl + path);
    for (const [key, value] of Object.entries(options.query ?? {})) url.searchParams.set(key, value);
    const headers: Record<string, string> = { accept: "application/json", "user-agent": "flagmeter-typescript/0.1.0" };
    if (this.#apiKey) headers.authorization = `Bearer ${this.#apiKey}`;
    let payload: string | undefined;
    if (options.body !== undefined) {
      headers["content-type"] = "application/json";
      payload = JSON.stringify(options.body);
    }
    const deadline = performance.now() + this.#retry.deadlineMs;
    for (let attempt = 0; ; attempt++) {
      const signal = AbortSignal.timeout(Math.ceil(Math.max(1, Math.min(this.#timeoutMs, deadline - performance.now()))));
      let failure: unknown;
      let retryAfterMs: number | undefined;
      let answer: Answer | undefined;
      try {
        const response = await this.#fetch(url, { method, headers, body: payload, signal });
        answer = { status: response.status, headers: response.headers, text: await response.text() };
      } catch (err) {
        if (!transient(err)) throw err;
        failure = err;
      }
      if (answer) {
        if (answer.status < 400 || (options.refusalOk && isRefusal(answer.status, answer.text))) return answer;
        failure = apiError(answer.status, answer.text);
        if (!RETRY_STATUSES.has(answer.status)) throw failure;
        retryAfterMs = parseRetryAfter(answer.headers.get("retry-after"));
      }
      const delay = backoffMs(this.#retry, attempt, retryAfterMs);
      if (performance.now() + delay >= deadline) {
        throw new DeadlineExceededError(`${method} ${path}: gave up after ${attempt + 1} attempt(s)`, failure);
      }
      this.stats.retried += options.weight ?? 0;
      await sleep(delay);
    }
  }

  async #json<T>(method: string, path: string, options?: RequestOptions): Promise<T> {
    return JSON.parse((await this.#request(method, path, options)).text) as T;
  }

  /**
   * Sends events (at most 1,000) and counts them; what is given up on goes to
   * `failures`. A batch refused as invalid (400) or too large (413) is halved
   * until the refused events stand alone, so that one bad event does not take
   * its neighbours down with it; the ids make resending the rest safe.
   */
  async #sendBatch(events: WireEvent[], failures: Failure[]): Promise<string[]> {
    try {
      await this.#request("POST", "/api/events/batch", { body: { events }, weight: events.length });
    } catch (error) {
      if (error instanceof ApiError && (error.status === 400 || error.status === 413) && events.length > 1) {
        const half = events.length >> 1;
        const first = await this.#sendBatch(events.slice(0, half), failures);
        return first.concat(await this.#sendBatch(events.slice(half), failures));
      }
      failures.push({ error, events });
      this.stats.failed += events.length;
      return [];
    }
    this.stats.sent += events.length;
    return events.map((event) => event.id);
  }

  // -- events -----------------------------------------------------------------

  /**
   * Queues one event and returns its id (a UUIDv7 unless given), at once.
   * Throws at once for an event the api would refuse, and `QueueFullError`
   * when `maxQueue` events are waiting (nothing is dropped: the caller keeps
   * the event).
   */
  record(input: EventInput): string {
    const event = buildEvent(input);
    if (this.#closed) throw new FlagMeterError("the client is closed");
    if (this.#pending.length >= this.#maxQueue) {
      void this.#kick();
      throw new QueueFullError(`${this.#pending.length} events queued: the api is slower than the caller, or down`);
    }
    this.#pending.push(event);
    this.stats.queued = this.#pending.length;
    if (this.#pending.length >= this.#batchSize) void this.#kick();
    else this.#arm();
    return event.id;
  }

  /**
   * Sends events now (not through the queue), 1,000 to a request, and returns
   * their ids; throws `FlushError` with the events that were refused.
   */
  async recordBatch(events: EventInput[]): Promise<string[]> {
    const bodies = events.map(buildEvent);
    const ids: string[] = [];
    const failures: Failure[] = [];
    for (let start = 0; start < bodies.length; start += MAX_BATCH) {
      ids.push(...(await this.#sendBatch(bodies.slice(start, start + MAX_BATCH), failures)));
    }
    if (failures.length > 0) throw new FlushError(failures);
    return ids;
  }

  /** Voids a recorded event (idempotent; may come before the event). */
  async void(tenant: string, id: string): Promise<void> {
    await this.#request("POST", "/api/events/void", { body: { tenant, id } });
  }

  // -- reads --------------------------------------------------------------------

  /** The tenant's current billing period. */
  usage(tenant: string): Promise<Usage> {
    return this.#json("GET", `/api/usage/${segment(tenant)}`);
  }

  /** Usage per minute, hour or day bucket. */
  timeseries(tenant: string, query: TimeseriesQuery = {}): Promise<Timeseries> {
    const params: Record<string, string> = { granularity: query.granularity ?? "hour" };
    if (query.from !== undefined) params.from = formatTime(query.from);
    if (query.to !== undefined) params.to = formatTime(query.to);
    if (query.feature !== undefined) params.feature = query.feature;
    if (query.tz !== undefined) params.tz = query.tz;
    return this.#json("GET", `/api/usage/${segment(tenant)}/timeseries`, { query: params });
  }

  /** Whether the tenant may use `tokens` more tokens now (advisory: `reserve` or `call` hold). */
  check(tenant: string, tokens = 0): Promise<Check> {
    return this.#json("GET", `/api/usage/${segment(tenant)}/check`, { query: { tokens: String(tokens) } });
  }

  // -- reservations -------------------------------------------------------------

  /** Holds `tokens` of the tenant's limits for one call; throws `LimitExceededError` when a limit refuses. */
  async reserve(input: ReserveInput): Promise<Reservation> {
    const answer = await this.#request("POST", "/api/reservations", { body: reservationBody(input), refusalOk: true });
    const body = JSON.parse(answer.text);
    if (answer.status === 429) {
      throw limitExceeded(input.tenant, body, parseRetryAfter(answer.headers.get("retry-after")));
    }
    return body as Reservation;
  }

  /** Gives back an unused reservation (idempotent). */
  async release(reservationId: string): Promise<void> {
    await this.#request("DELETE", `/api/reservations/${segment(reservationId)}`);
  }

  /**
   * One model call: reserves `estimateTokens` (throwing `LimitExceededError`
   * when refused), runs `fn`, in which `call.record(response)` records the
   * call's usage against the reservation, and releases the reservation if `fn`
   * returns or throws without recording. Returns what `fn` returns.
   *
   *     const answer = await fm.call({ tenant, feature: "gpt-4o", estimateTokens: 3000 }, async (call) => {
   *       const response = await openai.chat.completions.create({ ... });
   *       call.record(response);
   *       return response;
   *     });
   */
  async call<T>(options: CallOptions, fn: (call: Call) => T | Promise<T>): Promise<T> {
    const call = new Call(this, options);
    call.reservation = await this.#admit(options);
    try {
      return await fn(call);
    } finally {
      const id = call.reservationId;
      if (id !== undefined && call.eventId === undefined) {
        await this.release(id).catch((err: unknown) => {
          // Not fatal: an unreleased reservation expires at its TTL.
          console.warn(`flagmeter: could not release reservation ${id}: ${String(err)}`);
        });
      }
    }
  }

  /** Reserves; on an api without the reservation routes, asks the check instead. */
  async #admit(options: CallOptions): Promise<Reservation | undefined> {
    const { tenant, feature, estimateTokens, ttlSeconds } = options;
    if (this.#reservations !== false) {
      try {
        const reservation = await this.reserve({ tenant, tokens: estimateTokens, feature, ttlSeconds });
        this.#reservations = true;
        return reservation;
      } catch (err) {
        if (!(this.#reservations === undefined && routeMissing(err))) throw err;
        this.#reservations = false;
      }
    }
    const check = await this.check(tenant, estimateTokens);
    if (check.allowed) return undefined;
    let periodEnd: string | undefined;
    if (!check.limits?.length) {
      periodEnd = await this.usage(tenant).then((usage) => usage.periodEnd, () => undefined);
    }
    throw limitExceeded(tenant, check, undefined, periodEnd);
  }

  // -- tenants ------------------------------------------------------------------

  /** Creates or updates a tenant's settings; settings left out keep their value, `null` removes a limit. */
  putTenant(tenant: string, settings: TenantSettings): Promise<Tenant> {
    const body = Object.fromEntries(Object.entries(settings).filter(([, value]) => value !== undefined));
    return this.#json("PUT", `/api/tenants/${segment(tenant)}`, { body });
  }

  // -- the queue ----------------------------------------------------------------

  /** Sends the oldest event's batch once it has waited flushIntervalMs. */
  #arm(): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#kick();
    }, this.#flushIntervalMs);
    this.#timer.unref?.(); // a queued event alone does not keep the process alive: beforeExit sends it
  }

  #kick(): Promise<void> {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    this.#draining ??= this.#drain().finally(() => {
      this.#draining = undefined;
      if (this.#pending.length > 0) this.#arm();
    });
    return this.#draining;
  }

  async #drain(): Promise<void> {
    while (this.#pending.length > 0) {
      const batch = this.#pending.splice(0, this.#batchSize);
      this.stats.queued = this.#pending.length;
      const failures: Failure[] = [];
      await this.#sendBatch(batch, failures);
      this.#failures.push(...failures);
      for (const { error, events } of failures) {
        try {
          if (this.#onError) this.#onError(error, events);
          else console.error(`flagmeter: ${events.length} event(s) not delivered: ${String(error)}`);
        } catch (err) {
          console.error("flagmeter: onError threw", err);
        }
      }
    }
  }

  /**
   * Sends every queued event and waits for the outcome; throws `FlushError`
   * with the events not delivered since the last flush.
   */
  async flush(): Promise<void> {
    while (this.#pending.length > 0 || this.#draining !== undefined) await this.#kick();
    const failures = this.#failures.splice(0);
    if (failures.length > 0) throw new FlushError(failures);
  }

  /** Flushes, then refuses further events. Throws like `flush`. */
  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.flush();
    } finally {
      this.#closed = true;
      Client.#live.delete(this.#ref);
    }
  }

  // Events left queued when the process runs out of work are sent then.
  static #live = new Set<WeakRef<Client>>();
  static #hooked = false;

  static #watch(client: Client): void {
    Client.#live.add(client.#ref);
    if (Client.#hooked || nodeProcess === undefined) return;
    Client.#hooked = true;
    nodeProcess.on("beforeExit", () => {
      for (const ref of Client.#live) {
        const live = ref.deref();
        if (live === undefined || live.#closed) Client.#live.delete(ref);
        else if (live.#pending.length > 0) void live.#kick();
      }
    });
  }
}

/** One model call, inside `Client.call`. */
export class Call {
  reservation: Reservation | undefined;
  eventId: string | undefined;

  constructor(
    readonly client: Client,
    readonly options: CallOptions,
  ) {}

  get reservationId(): string | undefined {
    return this.reservation?.reservationId;
  }

  /** Records the call's usage, read from an OpenAI or Anthropic response, with the reservation. */
  record(response: unknown): string {
    return this.recordTokens(usageFromResponse(response));
  }

  /** Records the call's usage from explicit counts, with the reservation. */
  recordTokens(tokens: CallTokens): string {
    if (this.eventId !== undefined) throw new FlagMeterError("this call was already recorded");
    this.eventId = this.client.record({
      ...tokens,
      tenant: this.options.tenant,
      feature: this.options.feature,
      reservationId: this.reservationId,
    });
    return this.eventId;
  }
}
