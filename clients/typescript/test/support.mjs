// What the tests run against: the real api and pipeline, started on free
// loopback ports over a throwaway database and stream, and a lossy proxy in
// front of the api. Nothing here talks to anything but 127.0.0.1.

import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, openSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const GOLDEN = join(REPO, "clients/testdata/providers");

export function golden(name) {
  return JSON.parse(readFileSync(join(GOLDEN, `${name}.json`), "utf8"));
}

export function tenantName(prefix) {
  return `${prefix}-${randomBytes(4).toString("hex")}`;
}

async function freePort() {
  const server = createServer();
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  const { port } = server.address();
  await new Promise((ok) => server.close(ok));
  return port;
}

function psql(sql) {
  execFileSync(
    "psql",
    ["-h", process.env.PGHOST ?? "127.0.0.1", "-p", process.env.PGPORT ?? "5432", "-U", "postgres", "-d", "postgres", "-Atqc", sql],
    { stdio: "pipe" },
  );
}

/**
 * A running api and pipeline: `{ url, key, stop() }`. With FLAGMETER_TEST_URL
 * and FLAGMETER_TEST_KEY set, one that someone else runs.
 */
export async function startStack() {
  if (process.env.FLAGMETER_TEST_URL) {
    return { url: process.env.FLAGMETER_TEST_URL, key: process.env.FLAGMETER_TEST_KEY, stop: async () => {} };
  }
  let binDir = process.env.FLAGMETER_BIN_DIR ?? "target/debug";
  if (!isAbsolute(binDir)) binDir = join(REPO, binDir);
  const run = `${process.pid}_${randomBytes(4).toString("hex")}`;
  const database = `flagmeter_clients_ts_${run}`;
  const stream = `clients-ts:${run}:events`;
  const key = `fmk_test_${randomBytes(24).toString("hex")}`;
  const logs = mkdtempSync(join(tmpdir(), "flagmeter-clients-"));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const valkey = process.env.VALKEY_URL ?? "redis://127.0.0.1:6379";
  const env = {
    ...process.env,
    DATABASE_URL: `postgres://postgres@${process.env.PGHOST ?? "127.0.0.1"}:${process.env.PGPORT ?? "5432"}/${database}`,
    VALKEY_URL: valkey,
    FLAGMETER_STREAM: stream,
    FLAGMETER_API_ADDR: `127.0.0.1:${port}`,
    FLAGMETER_METRICS_ADDR: `127.0.0.1:${await freePort()}`,
    FLAGMETER_ADMIN_KEY: key,
    FLAGMETER_RATE_LIMIT_PER_SEC: "0",
    FLAGMETER_USAGE_CACHE_MS: "50",
    FLAGMETER_BLOCK_MS: "200",
    RUST_LOG: process.env.RUST_LOG ?? "warn",
  };
  const children = [];
  const logTail = () =>
    readdirSync(logs)
      .map((name) => `--- ${name}\n${readFileSync(join(logs, name), "utf8").split("\n").slice(-40).join("\n")}`)
      .join("\n");
  const launch = (name) => {
    const out = openSync(join(logs, `${name}.log`), "w");
    const child = spawn(join(binDir, name), [], { env, stdio: ["ignore", out, out] });
    children.push(child);
    return child;
  };
  const stop = async () => {
    for (const child of children) if (child.exitCode === null) child.kill("SIGTERM");
    await Promise.all(
      children.map((child) => (child.exitCode === null ? new Promise((ok) => child.once("exit", ok)) : undefined)),
    );
    try {
      psql(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
    } catch {}
    try {
      const { hostname, port: valkeyPort } = new URL(valkey);
      const args = ["-h", hostname, "-p", valkeyPort || "6379", "DEL", stream, `${stream}:dead`];
      for (const cli of ["valkey-cli", "redis-cli"]) {
        try {
          execFileSync(cli, args, { stdio: "pipe" });
          break;
        } catch {}
      }
    } catch {}
    rmSync(logs, { recursive: true, force: true });
  };

  psql(`CREATE DATABASE "${database}"`);
  try {
    // The api applies the migrations; the pipeline starts after it answers.
    const api = launch("flagmeter-api");
    const deadline = Date.now() + 120_000;
    for (;;) {
      if (api.exitCode !== null) throw new Error(`the api exited:\n${logTail()}`);
      try {
        if ((await fetch(`${url}/api/health`)).ok) break;
      } catch {}
      if (Date.now() > deadline) throw new Error(`the api does not answer on ${url}:\n${logTail()}`);
      await sleep(200);
    }
    launch("flagmeter-pipeline");
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, key, stop };
}

/**
 * An HTTP proxy on loopback in front of the api. `fault(n, method, path)`
 * decides, for the n-th request (from 1), what to do to it:
 * - undefined: forward it and relay the answer;
 * - ["lose", status]: forward it, let the api store it, then drop the real
 *   answer and say `status` (with `Retry-After: 0`) instead;
 * - ["refuse", status, retryAfter]: answer without forwarding;
 * - ["answer", status, body, headers]: answer that without forwarding (a
 *   stand-in for a route the api does not have yet);
 * - ["rewrite", change]: forward the JSON body as `change` returns it (a
 *   stand-in for a field the api does not take yet).
 * `seen` keeps each request as [method, path, body].
 */
export async function startProxy(target, fault) {
  const proxy = { requests: 0, lost: 0, refused: 0, seen: [] };
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    const n = ++proxy.requests;
    proxy.seen.push([req.method, req.url, body.length ? JSON.parse(body.toString()) : undefined]);
    const reply = (status, content, headers = {}) => {
      res.writeHead(status, { "content-type": "application/json", ...headers });
      res.end(content);
    };
    const action = fault(n, req.method, req.url);
    if (action?.[0] === "answer") {
      return reply(action[1], action[2] === undefined ? "" : JSON.stringify(action[2]), action[3] ?? {});
    }
    if (action?.[0] === "refuse") {
      proxy.refused++;
      return reply(action[1], '{"error":"injected"}', { "retry-after": String(action[2]) });
    }
    const sent = action?.[0] === "rewrite" ? JSON.stringify(action[1](JSON.parse(body.toString()))) : body;
    const headers = { ...req.headers };
    delete headers.host;
    delete headers["content-length"];
    delete headers.connection;
    const answer = await fetch(target + req.url, {
      method: req.method,
      headers,
      body: sent.length ? sent : undefined,
    });
    const text = await answer.text();
    if (action?.[0] === "lose" && answer.status < 300) {
      proxy.lost++;
      return reply(action[1], '{"error":"answer lost by the test proxy"}', { "retry-after": "0" });
    }
    const keep = {};
    for (const name of ["content-type", "retry-after"]) {
      if (answer.headers.get(name)) keep[name] = answer.headers.get(name);
    }
    reply(answer.status, text, keep);
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  proxy.url = `http://127.0.0.1:${server.address().port}`;
  proxy.close = () =>
    new Promise((ok) => {
      server.closeAllConnections?.();
      server.close(ok);
    });
  return proxy;
}

/** The done-when fault: every fourth request loses its answer after the api stored it, and the client is told 503. */
export const everyFourthAnswerLost = (n) => (n % 4 === 0 ? ["lose", 503] : undefined);

/**
 * Polls the usage until the pipeline has counted `expected` tokens; fails at
 * once if it counts more (a double count; unless `falling`, after a void),
 * and checks once more after the usage cache has turned over.
 */
export async function waitForTotal(readUsage, expected, { timeoutMs = 60_000, falling = false } = {}) {
  const deadline = Date.now() + timeoutMs;
  let usage;
  while (Date.now() < deadline) {
    try {
      usage = await readUsage();
    } catch (err) {
      if (err?.status !== 404) throw err; // a tenant not counted yet
      usage = undefined;
    }
    if (usage) {
      if (!falling && usage.totalTokens > expected) {
        throw new Error(`counted ${usage.totalTokens} > recorded ${expected}`);
      }
      if (usage.totalTokens === expected) {
        await sleep(1500); // the pipeline reads every 200 ms; the usage cache lives 50 ms
        usage = await readUsage();
        if (usage.totalTokens !== expected) throw new Error(`counted ${usage.totalTokens} != recorded ${expected}`);
        return usage;
      }
    }
    await sleep(200);
  }
  throw new Error(`counted ${usage?.totalTokens} != recorded ${expected} after ${timeoutMs} ms`);
}

/** Whether the api has the reservation routes: an api without them answers 404 "not found". */
export async function reservationsAvailable(url, key) {
  const response = await fetch(`${url}/api/reservations/probe-${randomBytes(4).toString("hex")}`, {
    method: "DELETE",
    headers: { authorization: `Bearer ${key}` },
  });
  const body = await response.json().catch(() => undefined);
  return !(response.status === 404 && body?.error === "not found");
}
