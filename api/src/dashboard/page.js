// FlagMeter dashboard: renders /api/usage/stream (Server-Sent Events).
// Tenant data only ever reaches the page through textContent and
// attributes, never through markup.
//
// The stream needs an API key (read scope), sent as a Bearer token, which
// an EventSource cannot do: the stream is read with fetch and parsed here.
// The key comes from the address (#key=..., removed from it at once), else
// from this tab's sessionStorage, else from the form the page then shows.
"use strict";

(() => {
  const SVG = "http://www.w3.org/2000/svg";
  const NEAR_POINTS = 10; // "near" within this many points below the alert
  const STALE_AFTER_MS = 5000; // figures older than this are called out
  const STREAM_URL = "/api/usage/stream";
  const KEY_STORAGE = "flagmeter.dashboard.apiKey";
  // Reconnection: the server's `retry:` hint, kept within these bounds and
  // doubled after each failed attempt up to the upper one.
  const RETRY_MIN_MS = 1000;
  const RETRY_MAX_MS = 10000;
  // The server sends an event every second and a comment line at least
  // every 15 s even when it cannot read the figures: three times that
  // without a single byte means the connection is dead.
  const SILENCE_MS = 45000;
  const RATE_LIMIT_MAX_S = 3600;

  const numbers = new Intl.NumberFormat();
  const percents = new Intl.NumberFormat(undefined, {
    minimumFractionDigits: 1,
    maximumFractionDigits: 1,
  });
  /** Formats of period ends, by time zone (null: unknown to this browser). */
  const periodEnds = new Map();
  const utcPeriodEnds = new Intl.DateTimeFormat(undefined, {
    dateStyle: "medium",
    timeStyle: "short",
    timeZone: "UTC",
  });
  const clock = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });

  const list = document.getElementById("tenants");
  const filter = document.getElementById("filter");
  const summary = document.getElementById("summary");
  const empty = document.getElementById("empty");
  const truncated = document.getElementById("truncated");
  const waiting = document.getElementById("waiting");
  const connection = document.getElementById("connection");
  const connectionText = document.getElementById("connection-text");
  const updated = document.getElementById("updated");
  const age = document.getElementById("age");
  const toolbar = document.getElementById("toolbar");
  const keyForm = document.getElementById("key-form");
  const keyInput = document.getElementById("key");
  const forget = document.getElementById("forget");

  /** Row elements by tenant id. */
  const rows = new Map();
  let tenants = [];
  /** Whether figures were shown for the key in use. */
  let received = false;
  let lastMessageAt = 0;
  let state = "";

  /** The key in use (null: none, the form is shown). */
  let apiKey = null;
  /** Bumped whenever the current connection is dropped: callbacks of an
      older connection check it and do nothing. */
  let generation = 0;
  let controller = null;
  let retryTimer = 0;
  let retryHintMs = 2000;
  let nextRetryMs = 2000;
  let rateLimitedUntil = 0;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // ---------------------------------------------------------------------------
  // Limits: the quota (tokens) and, when the tenant has one, the budget
  // (cost). Whether a limit has reached the alert threshold comes from the
  // server (`reached`, decided as alerts are); "near" is judged here.

  /** The tenant's limits, with the share of each used (percent). */
  function limits(t) {
    const all = [{ kind: "quota", percent: t.quotaPercent }];
    if (t.budgetPercent !== undefined) all.push({ kind: "budget", percent: t.budgetPercent });
    return all;
  }

  function limitLevel(t, limit) {
    if (t.reached.includes(limit.kind)) return "over";
    if (limit.percent >= t.alertAt - NEAR_POINTS) return "near";
    return "ok";
  }

  /** The tenant's level: the highest of its limits' levels. */
  function level(t) {
    const levels = limits(t).map((limit) => limitLevel(t, limit));
    if (levels.includes("over")) return "over";
    if (levels.includes("near")) return "near";
    return "ok";
  }

  /** The highest share of any limit: the list's order. */
  function topPercent(t) {
    return Math.max(...limits(t).map((limit) => limit.percent));
  }

  function capitalized(text) {
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  /** Which limits are at the tenant's level, in words: "Quota and budget
      at or over 80 %". */
  function markerText(t, lvl) {
    if (lvl === "ok") return "";
    const at = limits(t).filter((limit) => limitLevel(t, limit) === lvl);
    const names = capitalized(at.map((limit) => limit.kind).join(" and "));
    const threshold = t.alertAt + "\u00a0%";
    if (lvl === "near") return names + " near " + threshold;
    return at.every((limit) => limit.percent >= 100) && t.alertAt <= 100
      ? names + " used up (alert at " + threshold + ")"
      : names + " at or over " + threshold;
  }

  /** A bar of one limit's share, with a tick at the alert threshold. */
  function meter(kind) {
    const bar = el("div", "bar " + kind + "-bar");
    bar.setAttribute("aria-hidden", "true");
    const fill = el("div", "fill");
    const tick = el("div", "alert-tick");
    bar.append(fill, tick);
    return { bar, fill, tick };
  }

  /** Shows `limit` (or hides the bar, for a limit the tenant lacks). */
  function updateMeter(m, t, limit) {
    m.bar.hidden = limit === undefined;
    if (limit === undefined) return;
    m.bar.dataset.level = limitLevel(t, limit);
    m.fill.style.width = Math.min(Math.max(limit.percent, 0), 100) + "%";
    m.tick.hidden = t.alertAt > 100;
    m.tick.style.left = Math.min(t.alertAt, 100) + "%";
  }

  // ---------------------------------------------------------------------------
  // Rows.

  function createRow(id) {
    const row = el("li", "tenant");
    row.dataset.tenant = id;
    const head = el("div", "head");
    const name = el("h2", "name");
    const title = el("span", "tenant-name");
    const idLabel = el("span", "tenant-id");
    name.append(title, " ", idLabel);
    const marker = el("span", "marker");
    const icon = el("span", "icon");
    icon.setAttribute("aria-hidden", "true");
    const markerLabel = el("span", "marker-text");
    marker.append(icon, markerLabel);
    head.append(name, marker);

    const figures = el("p", "figures");
    const percent = el("span", "percent");
    const tokens = el("span", "tokens");
    const used = el("strong", "used");
    const quota = el("span", "quota");
    tokens.append(used, " of ", quota, " tokens");
    figures.append(percent, tokens);
    const quotaMeter = meter("quota");
    // Cost, budget and unpriced tokens; the budget's bar under them.
    const costs = el("div", "costs");
    const spend = el("p", "spend");
    spend.hidden = true;
    const budgetMeter = meter("budget");
    costs.append(spend, budgetMeter.bar);

    const spark = document.createElementNS(SVG, "svg");
    spark.setAttribute("class", "spark");
    spark.setAttribute("viewBox", "0 0 59 20");
    spark.setAttribute("preserveAspectRatio", "none");
    spark.setAttribute("role", "img");
    const sparkTitle = document.createElementNS(SVG, "title");
    const area = document.createElementNS(SVG, "polygon");
    const line = document.createElementNS(SVG, "polyline");
    spark.append(sparkTitle, area, line);

    const period = el("p", "period");
    const periodEnd = el("time");
    const zone = el("span", "zone");
    period.append("Period ends ", periodEnd, " ", zone);

    const details = el("details");
    const detailsSummary = el("summary");
    const table = el("table", "features");
    const caption = el("caption", "visually-hidden");
    const thead = el("thead");
    const headRow = el("tr");
    const heading = (label, cls) => {
      const th = el("th", cls, label);
      th.scope = "col";
      headRow.append(th);
      return th;
    };
    heading("Feature", "");
    heading("Tokens", "num");
    heading("Share", "num");
    const costHead = heading("Cost", "num");
    thead.append(headRow);
    const tbody = el("tbody");
    table.append(caption, thead, tbody);
    details.append(detailsSummary, table);

    row.append(head, figures, quotaMeter.bar, costs, spark, period, details);
    return {
      row, title, idLabel, marker, icon, markerLabel, percent, used, quota, quotaMeter, spend,
      budgetMeter, spark, sparkTitle, area, line, periodEnd, zone, detailsSummary, caption,
      costHead, tbody,
    };
  }

  // An exact decimal string with at least two decimals: "4.700000" is
  // "4.70", "4.701234" stays as it is (costs are never rounded).
  function money(text) {
    return text.replace(/(\.\d\d\d*?)0+$/, "$1");
  }

  function isZero(amount) {
    return /^0(\.0*)?$/.test(amount);
  }

  function unpricedText(tokens) {
    return numbers.format(tokens) + (tokens === 1 ? " token" : " tokens") + " without a price";
  }

  // Cost and budget, shown where they are set (a budget, or a cost
  // counted), and tokens that had no price, whatever else is shown: they
  // are in no cost.
  function spendText(t, currency) {
    const parts = [];
    if (t.budget !== undefined) {
      parts.push("Cost " + money(t.cost) + " of " + money(t.budget) + " " + currency +
        " budget (" + percents.format(t.budgetPercent) + "\u00a0%)");
    } else if (!isZero(t.cost)) {
      parts.push("Cost " + money(t.cost) + " " + currency);
    }
    if (t.unpricedTokens > 0) parts.push(unpricedText(t.unpricedTokens));
    return parts.join(" \u00b7 ");
  }

  /** A feature's cost cell: its cost, and its tokens that had no price. */
  function featureCostText(f) {
    if (f.unpricedTokens === 0) return money(f.cost);
    if (f.unpricedTokens === f.totalTokens) return "no price";
    return money(f.cost) + " + " + unpricedText(f.unpricedTokens);
  }

  /** The end of `t`'s period in its own time zone, and the zone's name
      (UTC, said so, where this browser does not know the zone). */
  function periodEndText(t) {
    if (!periodEnds.has(t.timezone)) {
      let format = null;
      try {
        format = new Intl.DateTimeFormat(undefined, {
          dateStyle: "medium",
          timeStyle: "short",
          timeZone: t.timezone,
        });
      } catch {
        // RangeError: a zone this browser's time zone data lacks.
      }
      periodEnds.set(t.timezone, format);
    }
    const format = periodEnds.get(t.timezone);
    const end = new Date(t.periodEnd);
    if (format) return [format.format(end), "(" + t.timezone + ")"];
    return [utcPeriodEnds.format(end), "(UTC)"];
  }

  function updateRow(r, t, seriesStart, currency) {
    const lvl = level(t);
    r.row.dataset.level = lvl;
    r.row.dataset.percent = String(topPercent(t));
    r.row.dataset.search = (t.tenantName + " " + t.tenant).toLowerCase();
    r.title.textContent = t.tenantName;
    r.idLabel.textContent = t.tenantName === t.tenant ? "" : "(" + t.tenant + ")";

    const text = markerText(t, lvl);
    r.marker.hidden = text === "";
    r.marker.dataset.level = lvl;
    r.icon.textContent = lvl === "over" ? "\u25B2 " : "\u25CF ";
    r.markerLabel.textContent = text;

    r.percent.textContent = percents.format(t.quotaPercent) + "\u00a0%";
    r.used.textContent = numbers.format(t.totalTokens);
    r.quota.textContent = numbers.format(t.monthlyQuota);
    const [quotaLimit, budgetLimit] = limits(t);
    updateMeter(r.quotaMeter, t, quotaLimit);
    const spend = spendText(t, currency);
    r.spend.hidden = spend === "";
    r.spend.textContent = spend;
    updateMeter(r.budgetMeter, t, budgetLimit);

    drawSparkline(r, t.lastHour, seriesStart);

    r.periodEnd.dateTime = t.periodEnd;
    [r.periodEnd.textContent, r.zone.textContent] = periodEndText(t);

    const features = t.byFeature;
    r.detailsSummary.textContent =
      features.length === 1 ? "1 feature" : features.length + " features";
    r.caption.textContent = "Tokens and cost by feature for " + t.tenantName;
    r.costHead.textContent = "Cost (" + currency + ")";
    const body = document.createDocumentFragment();
    for (const f of features) {
      const tr = el("tr");
      const share = t.totalTokens > 0 ? (f.totalTokens * 100) / t.totalTokens : 0;
      tr.append(
        el("td", "", f.feature),
        el("td", "num", numbers.format(f.totalTokens)),
        el("td", "num", percents.format(share) + "\u00a0%"),
        el("td", "num", featureCostText(f)),
      );
      body.append(tr);
    }
    r.tbody.replaceChildren(body);
  }

  function drawSparkline(r, values, seriesStart) {
    const max = Math.max(0, ...values);
    const points = values.map((v, i) => {
      const y = max > 0 ? 19 - (v / max) * 18 : 19;
      return i + "," + y.toFixed(2);
    });
    r.line.setAttribute("points", points.join(" "));
    r.area.setAttribute("points", "0,20 " + points.join(" ") + " " + (values.length - 1) + ",20");
    const total = values.reduce((a, b) => a + b, 0);
    const label =
      "Tokens per minute since " + clock.format(new Date(seriesStart)) + ": " +
      numbers.format(total) + " in total, peak " + numbers.format(max) +
      ", current minute " + numbers.format(values[values.length - 1] || 0);
    r.sparkTitle.textContent = label;
    r.spark.setAttribute("aria-label", label);
  }

  function byPercentThenName(a, b) {
    return topPercent(b) - topPercent(a) || a.tenantName.localeCompare(b.tenantName) ||
      a.tenant.localeCompare(b.tenant);
  }

  function render(snapshot) {
    received = true;
    waiting.hidden = true;
    tenants = snapshot.tenants.slice().sort(byPercentThenName);
    const seen = new Set();
    for (const t of tenants) {
      let r = rows.get(t.tenant);
      if (!r) {
        r = createRow(t.tenant);
        rows.set(t.tenant, r);
      }
      updateRow(r, t, snapshot.seriesStart, snapshot.currency);
      seen.add(t.tenant);
    }
    for (const [id, r] of rows) {
      if (!seen.has(id)) {
        r.row.remove();
        rows.delete(id);
      }
    }
    const order = tenants.map((t) => rows.get(t.tenant).row);
    const current = Array.from(list.children);
    if (order.length !== current.length || order.some((row, i) => row !== current[i])) {
      list.replaceChildren(...order);
    }
    truncated.hidden = !snapshot.truncated;
    applyFilter();
  }

  function applyFilter() {
    const needle = filter.value.trim().toLowerCase();
    let shown = 0;
    for (const r of rows.values()) {
      const match = needle === "" || r.row.dataset.search.includes(needle);
      r.row.hidden = !match;
      if (match) shown += 1;
    }
    const alerting = tenants.filter((t) => level(t) === "over").length;
    let text = tenants.length === 1 ? "1 tenant" : numbers.format(tenants.length) + " tenants";
    text += ", " + numbers.format(alerting) + " at or over the alert threshold";
    if (needle !== "") text += "; " + numbers.format(shown) + " match the filter";
    summary.textContent = text;
    empty.hidden = tenants.length > 0;
  }

  const STATE_TEXT = {
    connecting: "Connecting to the live figures…",
    live: "Live",
    stale: "Connected, but the figures are not being refreshed",
    reconnecting: "Connection lost, reconnecting…",
    down: "Disconnected, retrying…",
    limited: "Too many requests, retrying soon…",
    "no-key": "Not connected: an API key is needed",
    refused: "Key refused",
  };

  /** Shows a connection state, with `text` instead of its usual words. */
  function setState(next, text) {
    const words = text || STATE_TEXT[next];
    if (next === state && connectionText.textContent === words) return;
    state = next;
    connection.dataset.state = next;
    connectionText.textContent = words;
  }

  function showFreshness() {
    if (state === "limited") {
      const seconds = Math.max(0, Math.ceil((rateLimitedUntil - Date.now()) / 1000));
      setState("limited", "Too many requests, retrying in " + seconds + "\u00a0s…");
    }
    if (lastMessageAt === 0) return;
    const seconds = Math.round((Date.now() - lastMessageAt) / 1000);
    age.textContent = "(" + seconds + "\u00a0s ago)";
    if (state === "live" && Date.now() - lastMessageAt > STALE_AFTER_MS) setState("stale");
  }

  function onMessage(event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    lastMessageAt = Date.now();
    if (message.type === "snapshot") render(message);
    updated.dateTime = message.asOf;
    updated.textContent = clock.format(new Date(message.asOf));
    setState("live");
    showFreshness();
  }

  // -------------------------------------------------------------------------
  // The key.

  function storedKey() {
    try {
      return sessionStorage.getItem(KEY_STORAGE);
    } catch {
      return null; // storage disabled: the key lives in memory only
    }
  }

  function storeKey(key) {
    try {
      sessionStorage.setItem(KEY_STORAGE, key);
    } catch {
      // Kept in memory only.
    }
  }

  function dropStoredKey() {
    try {
      sessionStorage.removeItem(KEY_STORAGE);
    } catch {
      // Nothing stored.
    }
  }

  /** Takes `key=...` out of the address's fragment (keeping anything else
      there) so that the key is neither left on screen nor in the history;
      returns it, or null. */
  function takeKeyFromAddress() {
    const fragment = location.hash.replace(/^#/, "");
    if (fragment === "") return null;
    let key = null;
    const rest = fragment.split("&").filter((part) => {
      if (!part.startsWith("key=")) return true;
      const raw = part.slice(4);
      try {
        key = decodeURIComponent(raw);
      } catch {
        key = raw;
      }
      return false;
    });
    if (key === null) return null;
    const clean = location.pathname + location.search + (rest.length ? "#" + rest.join("&") : "");
    history.replaceState(history.state, "", clean);
    key = key.trim();
    return key === "" ? null : key;
  }

  /** Shows the key form (nothing else to see without a key) or the
      figures. */
  function showKeyForm(shown) {
    keyForm.hidden = !shown;
    waiting.hidden = shown || received;
    toolbar.hidden = shown;
    forget.hidden = shown;
  }

  /** Removes every figure from the page: they were read with a key that is
      no longer in use. */
  function clearFigures() {
    rows.clear();
    tenants = [];
    received = false;
    list.replaceChildren();
    lastMessageAt = 0;
    updated.removeAttribute("datetime");
    updated.textContent = "not yet";
    age.textContent = "";
    summary.textContent = "";
    truncated.hidden = true;
    empty.hidden = true;
  }

  function useKey(key) {
    if (apiKey !== null && key !== apiKey) clearFigures();
    apiKey = key;
    storeKey(key);
    showKeyForm(false);
    nextRetryMs = clampRetry(retryHintMs);
    setState("connecting");
    connect();
  }

  /** Stops using the key, forgets it and its figures, and shows the form
      with `nextState` (and `text`, if given, for its words). */
  function dropKey(nextState, text, focus) {
    stopConnection();
    apiKey = null;
    dropStoredKey();
    clearFigures();
    setState(nextState, text);
    showKeyForm(true);
    if (focus) keyInput.focus();
  }

  // -------------------------------------------------------------------------
  // The stream.

  function clampRetry(ms) {
    return Math.min(Math.max(ms, RETRY_MIN_MS), RETRY_MAX_MS);
  }

  /** Drops the current connection (if any) and any pending retry. */
  function stopConnection() {
    generation += 1;
    clearTimeout(retryTimer);
    retryTimer = 0;
    if (controller) controller.abort();
    controller = null;
  }

  /** Tries again after the current delay, then backs off. */
  function retryLater(nextState) {
    stopConnection();
    setState(nextState);
    retryTimer = setTimeout(connect, nextRetryMs);
    nextRetryMs = clampRetry(nextRetryMs * 2);
  }

  function retryAfterSeconds(header) {
    let seconds = NaN;
    if (header && /^\s*\d+\s*$/.test(header)) {
      seconds = Number(header);
    } else if (header) {
      seconds = (Date.parse(header) - Date.now()) / 1000;
    }
    if (!Number.isFinite(seconds)) seconds = RETRY_MAX_MS / 1000;
    return Math.min(Math.max(Math.ceil(seconds), 1), RATE_LIMIT_MAX_S);
  }

  /** The `error` of a JSON error body, else the HTTP status. */
  async function errorText(response) {
    try {
      const body = await response.json();
      if (body && typeof body.error === "string" && body.error.trim() !== "") {
        return body.error.trim().slice(0, 300);
      }
    } catch {
      // Not JSON.
    }
    return "HTTP " + response.status;
  }

  async function connect() {
    if (apiKey === null) return;
    stopConnection();
    const mine = generation;
    const current = () => mine === generation;
    const aborter = new AbortController();
    controller = aborter;
    // Until the first byte, and between any two, at most SILENCE_MS.
    let silence = 0;
    const watch = () => {
      clearTimeout(silence);
      silence = setTimeout(() => aborter.abort(), SILENCE_MS);
    };
    if (state !== "reconnecting" && state !== "down") setState("connecting");
    try {
      await stream(aborter.signal, watch, current);
    } finally {
      clearTimeout(silence);
    }
  }

  /** One connection, until it ends, fails or is refused. */
  async function stream(signal, watch, current) {
    let response;
    try {
      watch();
      response = await fetch(STREAM_URL, {
        headers: { Authorization: "Bearer " + apiKey, Accept: "text/event-stream" },
        cache: "no-store",
        signal,
      });
    } catch {
      if (current()) retryLater("down");
      return;
    }
    if (!current()) return;
    if (response.status === 401 || response.status === 403) {
      const why = await errorText(response);
      if (current()) dropKey("refused", "Key refused: " + why, true);
      return;
    }
    if (response.status === 429) {
      const seconds = retryAfterSeconds(response.headers.get("Retry-After"));
      response.body?.cancel().catch(() => {});
      stopConnection();
      rateLimitedUntil = Date.now() + seconds * 1000;
      setState("limited");
      showFreshness();
      retryTimer = setTimeout(connect, seconds * 1000);
      return;
    }
    const type = response.headers.get("Content-Type") || "";
    if (!response.ok || !response.body || !type.startsWith("text/event-stream")) {
      response.body?.cancel().catch(() => {});
      retryLater("down");
      return;
    }
    try {
      await readEvents(response.body, watch, current);
    } catch {
      // Aborted (silence, or the key was dropped) or the network failed.
    }
    if (current()) retryLater("reconnecting");
  }

  /** Parses the event stream (https://html.spec.whatwg.org/multipage/server-sent-events.html)
      until it ends: `data:` lines joined with "\n", dispatched at a blank
      line; comments ignored; `retry:` kept as the reconnection delay. */
  async function readEvents(body, watch, current) {
    const reader = body.getReader();
    const decoder = new TextDecoder(); // drops a leading byte order mark
    let buffer = "";
    let data = [];
    let type = "";

    const line = (text) => {
      if (text === "") {
        if (data.length > 0 && (type === "" || type === "message")) {
          // A complete event: the server is answering, so back off from
          // its hint again next time.
          nextRetryMs = clampRetry(retryHintMs);
          onMessage({ data: data.join("\n") });
        }
        data = [];
        type = "";
        return;
      }
      if (text.startsWith(":")) return; // a comment (keep-alive)
      const colon = text.indexOf(":");
      const field = colon === -1 ? text : text.slice(0, colon);
      let value = colon === -1 ? "" : text.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") data.push(value);
      else if (field === "event") type = value;
      else if (field === "retry" && /^\d+$/.test(value)) retryHintMs = Number(value);
    };

    const lines = (final) => {
      let start = 0;
      for (let i = 0; i < buffer.length; i += 1) {
        const c = buffer[i];
        if (c !== "\n" && c !== "\r") continue;
        if (c === "\r" && i + 1 === buffer.length && !final) break; // "\r\n" split
        line(buffer.slice(start, i));
        if (c === "\r" && buffer[i + 1] === "\n") i += 1;
        start = i + 1;
      }
      buffer = buffer.slice(start);
    };

    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (!current()) return;
        watch();
        if (done) {
          buffer += decoder.decode();
          lines(true);
          return; // an unfinished event is dropped
        }
        buffer += decoder.decode(value, { stream: true });
        lines(false);
      }
    } finally {
      reader.releaseLock();
    }
  }

  // -------------------------------------------------------------------------

  keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = keyInput.value.trim();
    keyInput.value = "";
    if (key === "") {
      keyInput.focus();
      return;
    }
    useKey(key);
  });

  forget.addEventListener("click", () => {
    dropKey("no-key", undefined, true);
  });

  // A key pasted into the address of an open page.
  window.addEventListener("hashchange", () => {
    const key = takeKeyFromAddress();
    if (key !== null) useKey(key);
  });

  filter.addEventListener("input", applyFilter);
  setInterval(showFreshness, 1000);

  const key = takeKeyFromAddress() ?? storedKey();
  if (key) {
    useKey(key);
  } else {
    setState("no-key");
    showKeyForm(true);
  }
})();
