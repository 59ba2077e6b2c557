/**
 * FlagMeter client: meter AI-token usage per tenant.
 *
 *     import { Client, usageFromOpenAI } from "flagmeter";
 *     const fm = new Client({ baseUrl: "http://127.0.0.1:3000", apiKey: process.env.FLAGMETER_API_KEY });
 *     fm.record({ tenant: "acme-corp", feature: "gpt-4o", ...usageFromOpenAI(response) });
 *     await fm.close();
 */

export { Client, Call, type CallOptions, type CallTokens, type ClientOptions } from "./client.js";
export { DEFAULT_RETRY, MAX_BATCH, uuid7, type RetryPolicy } from "./core.js";
export {
  ApiError,
  DeadlineExceededError,
  FlagMeterError,
  FlushError,
  LimitExceededError,
  QueueFullError,
  type Failure,
} from "./errors.js";
export { usageFromAnthropic, usageFromOpenAI, usageFromResponse } from "./providers.js";
export type * from "./types.js";
