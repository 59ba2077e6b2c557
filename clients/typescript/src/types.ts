/**
 * Shapes of what the caller passes in and of what the api answers (its JSON,
 * keys as the api spells them). Answers are the parsed JSON, so that a field
 * the api adds later is there too.
 */

/** An instant: a `Date` or an RFC 3339 string. */
export type Timestamp = Date | string;

/** Tokens of one model call by class, as the provider mappings give them. */
export interface TokenUsage {
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
}

/** One usage event. `tokens`, or token classes (or both, adding up), are required. */
export interface EventInput {
  tenant: string;
  feature: string;
  tokens?: number;
  inputTokens?: number;
  outputTokens?: number;
  cacheReadTokens?: number;
  cacheWriteTokens?: number;
  /** Idempotency key; a UUIDv7 is made when absent. */
  id?: string;
  timestamp?: Timestamp;
  reservationId?: string;
}

/** An event as sent: its id fixed, absent fields left out. */
export interface WireEvent extends Omit<EventInput, "id" | "timestamp"> {
  id: string;
  timestamp?: string;
}

export type LimitKind = "quota" | "budget" | "tokensPerMinute" | "requestsPerMinute";

/** One limit that applies to a tenant (reservations and the check). */
export interface Limit {
  kind: LimitKind | string;
  limit: number | string;
  used: number | string;
  reserved: number | string;
  remaining: number | string;
  resetAt: string;
}

export interface ReserveInput {
  tenant: string;
  /** The call's estimate: prompt + max output tokens. */
  tokens: number;
  feature?: string;
  inputTokens?: number;
  outputTokens?: number;
  cacheReadTokens?: number;
  cacheWriteTokens?: number;
  /** 1–900, default 60. */
  ttlSeconds?: number;
  /** Idempotency key; a UUIDv7 is made when absent. */
  id?: string;
}

/** A granted reservation (`POST /api/reservations` → 201). */
export interface Reservation {
  reservationId: string;
  allowed: true;
  expiresAt: string;
  limits: Limit[];
}

/** `GET /api/usage/{tenant}/check`. */
export interface Check {
  tenant: string;
  allowed: boolean;
  remainingTokens: number;
  quotaPercent: number;
  remainingBudget?: string;
  asOf: string;
  lagMs: number;
  limits?: Limit[];
  blockedBy?: string;
}

/** Tokens by class and their cost, in a usage answer. */
export interface TokenTotals {
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
  cost: string;
  unpricedTokens: number;
}

export interface FeatureUsage extends TokenTotals {
  feature: string;
  totalTokens: number;
}

/** `GET /api/usage/{tenant}`: the current billing period. */
export interface Usage {
  tenant: string;
  tenantName: string;
  totalTokens: number;
  monthlyQuota: number;
  quotaPercent: number;
  periodStart: string;
  periodEnd: string;
  cost: string;
  currency: string;
  unpricedTokens: number;
  budget?: string;
  budgetPercent?: number;
  byFeature: FeatureUsage[];
  asOf: string;
  lastCountedAt?: string | null;
}

export interface TimeseriesQuery {
  granularity?: "minute" | "hour" | "day";
  from?: Timestamp;
  to?: Timestamp;
  feature?: string;
  /** IANA zone of hour and day buckets (default: the tenant's). */
  tz?: string;
}

export interface Point extends TokenTotals {
  start: string;
  totalTokens: number;
  eventCount: number;
}

/** `GET /api/usage/{tenant}/timeseries`: every bucket, empty ones as 0. */
export interface Timeseries {
  tenant: string;
  granularity: string;
  tz: string;
  from: string;
  to: string;
  feature?: string;
  points: Point[];
}

/**
 * `PUT /api/tenants/{tenant}`: settings left out keep their value; `null`
 * removes a nullable limit.
 */
export interface TenantSettings {
  name?: string;
  monthlyQuota?: number;
  billingDay?: number;
  timezone?: string;
  alertThresholds?: number[];
  monthlyBudget?: string | null;
  tokensPerMinute?: number | null;
  requestsPerMinute?: number | null;
}

export interface Tenant {
  id: string;
  name: string;
  monthlyQuota: number;
  billingDay: number;
  timezone: string;
  alertThresholds: number[];
  monthlyBudget?: string | null;
  tokensPerMinute?: number | null;
  requestsPerMinute?: number | null;
  createdAt: string;
  updatedAt: string;
}

/** Counters of events: sent (accepted), retried (re-sent; twice counts twice), failed (given up on), queued. */
export interface Stats {
  sent: number;
  retried: number;
  failed: number;
  queued: number;
}
