// k6 equivalent of flagmeter-load's traffic, for those who prefer k6.
// Not run by the test suite. Only point it at an api you run yourself.
//
//   k6 run -e PROFILE=baseline load-test/k6/flagmeter.js
//   k6 run -e PROFILE=constant -e RATE=1000 -e DURATION=30s load-test/k6/flagmeter.js
//
// Environment: PROFILE (baseline | spike | stress | soak | breakpoint |
// constant, default constant), BASE_URL (default http://127.0.0.1:3000),
// RATE and DURATION (constant only; default 1000 and 10s), MIX (percentage
// of posts, default 80), BATCH (events per post; above 1 posts go to
// /api/events/batch; default 1), API_KEY (sent as a bearer token),
// TENANTS and FEATURES (comma lists).
import http from 'k6/http';
import { check, sleep } from 'k6';

const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:3000').replace(/\/$/, '');
const PROFILE = __ENV.PROFILE || 'constant';
const MIX = Number(__ENV.MIX || 80);
const BATCH = Number(__ENV.BATCH || 1);
const TENANTS = (__ENV.TENANTS || 'acme-corp,globex-inc,initech-llc').split(',');
const FEATURES = (__ENV.FEATURES || 'gpt-4-turbo,gpt-4o,claude-3-opus,claude-3-sonnet').split(',');

const HEADERS = { 'Content-Type': 'application/json' };
if (__ENV.API_KEY) {
  HEADERS.Authorization = `Bearer ${__ENV.API_KEY}`;
}

// The stages and pauses of every profile but constant, shared with
// flagmeter-load (src/profile.rs).
const PROFILES = JSON.parse(open(import.meta.resolve('../profiles.json')));

// Pause after each iteration of the closed-model profiles, in seconds.
function thinkOf(think) {
  if (think.upToMs !== undefined) {
    return () => (Math.random() * think.upToMs) / 1000;
  }
  if (think.fixedMs !== undefined) {
    return () => think.fixedMs / 1000;
  }
  return () => 0;
}

const THINK = Object.fromEntries(
  Object.entries(PROFILES.staged).map(([name, profile]) => [name, thinkOf(profile.think)]),
);

function rampingVus(profile) {
  return {
    executor: 'ramping-vus',
    startVUs: profile.startUsers,
    stages: profile.stages.map(([seconds, target]) => ({ duration: `${seconds}s`, target })),
  };
}

// Steps, not ramps: each rate is held for stepSeconds, then jumps to the
// next. The threshold below aborts the run once errors appear, so it steps
// no higher.
function steppedArrivals({ rates, stepSeconds }) {
  return {
    executor: 'ramping-arrival-rate',
    startRate: rates[0],
    timeUnit: '1s',
    preAllocatedVUs: 500,
    maxVUs: 5000,
    stages: rates.flatMap((target, i) => [
      ...(i > 0 ? [{ duration: '0s', target }] : []),
      { duration: `${stepSeconds}s`, target },
    ]),
  };
}

const SCENARIOS = {
  ...Object.fromEntries(
    Object.entries(PROFILES.staged).map(([name, profile]) => [name, rampingVus(profile)]),
  ),
  breakpoint: steppedArrivals(PROFILES.breakpoint),
  constant: {
    executor: 'constant-arrival-rate',
    rate: Number(__ENV.RATE || 1000),
    timeUnit: '1s',
    duration: __ENV.DURATION || '10s',
    preAllocatedVUs: 256,
    maxVUs: 2000,
  },
};

const THRESHOLDS = {
  baseline: { http_req_duration: ['p(95)<200', 'p(99)<500'], http_req_failed: ['rate<0.05'] },
  spike: { http_req_duration: ['p(99)<1000'] },
  stress: { http_req_duration: ['p(99)<2000'] },
  soak: { http_req_duration: ['p(95)<300', 'p(99)<800'] },
  breakpoint: { http_req_failed: [{ threshold: 'rate==0', abortOnFail: true }] },
  constant: {},
};

if (!SCENARIOS[PROFILE]) {
  throw new Error(`unknown PROFILE ${PROFILE}: use one of ${Object.keys(SCENARIOS).join(', ')}`);
}

export const options = {
  scenarios: { [PROFILE]: SCENARIOS[PROFILE] },
  thresholds: THRESHOLDS[PROFILE],
};

function pick(list) {
  return list[Math.floor(Math.random() * list.length)];
}

function event() {
  return {
    tenant: pick(TENANTS),
    feature: pick(FEATURES),
    tokens: 100 + Math.floor(Math.random() * 5000),
  };
}

export default function () {
  if (Math.random() * 100 < MIX) {
    const single = BATCH <= 1;
    const body = single
      ? event()
      : { events: Array.from({ length: BATCH }, event) };
    const url = single ? `${BASE_URL}/api/events` : `${BASE_URL}/api/events/batch`;
    const res = http.post(url, JSON.stringify(body), { headers: HEADERS });
    check(res, { 'post answered 202': (r) => r.status === 202 });
  } else {
    const res = http.get(`${BASE_URL}/api/usage/${pick(TENANTS)}`, {
      headers: HEADERS,
      // A tenant not counted yet answers 404; that is not a failure.
      responseCallback: http.expectedStatuses(200, 404),
    });
    check(res, { 'usage answered 200': (r) => r.status === 200 || r.status === 404 });
  }
  const think = THINK[PROFILE];
  if (think) {
    const pause = think();
    if (pause > 0) {
      sleep(pause);
    }
  }
}
