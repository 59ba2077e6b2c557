// FlagMeter dashboard: renders /api/usage/stream (Server-Sent Events).
// Tenant data only ever reaches the page through textContent and
// attributes, never through markup.
"use strict";

(() => {
  const SVG = "http://www.w3.org/2000/svg";
  const NEAR_POINTS = 10; // "near" within this many points below the alert
  const STALE_AFTER_MS = 5000; // figures older than this are called out
  const REOPEN_MAX_MS = 15000;

  const numbers = new Intl.NumberFormat();
  const percents = new Intl.NumberFormat(undefined, {
    minimumFractionDigits: 1,
    maximumFractionDigits: 1,
  });
  const periodEnds = new Intl.DateTimeFormat(undefined, {
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
  const connection = document.getElementById("connection");
  const connectionText = document.getElementById("connection-text");
  const updated = document.getElementById("updated");
  const age = document.getElementById("age");

  /** Row elements by tenant id. */
  const rows = new Map();
  let tenants = [];
  let lastMessageAt = 0;
  let state = "";
  let source = null;
  let reopenDelay = 1000;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function level(t) {
    if (t.quotaPercent >= t.alertAt) return "over";
    if (t.quotaPercent >= t.alertAt - NEAR_POINTS) return "near";
    return "ok";
  }

  function markerText(t, lvl) {
    if (lvl === "over") {
      return t.quotaPercent >= 100 && t.alertAt <= 100
        ? "quota used up (alert at " + t.alertAt + "\u00a0%)"
        : "at or over " + t.alertAt + "\u00a0%";
    }
    if (lvl === "near") return "near " + t.alertAt + "\u00a0%";
    return "";
  }

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

    const bar = el("div", "bar");
    bar.setAttribute("aria-hidden", "true");
    const fill = el("div", "fill");
    const tick = el("div", "alert-tick");
    bar.append(fill, tick);

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
    period.append("Period ends ", periodEnd);

    const details = el("details");
    const detailsSummary = el("summary");
    const table = el("table", "features");
    const caption = el("caption", "visually-hidden");
    const thead = el("thead");
    const headRow = el("tr");
    for (const [label, cls] of [["Feature", ""], ["Tokens", "num"], ["Share", "num"]]) {
      const th = el("th", cls, label);
      th.scope = "col";
      headRow.append(th);
    }
    thead.append(headRow);
    const tbody = el("tbody");
    table.append(caption, thead, tbody);
    details.append(detailsSummary, table);

    row.append(head, figures, bar, spark, period, details);
    return {
      row, title, idLabel, marker, icon, markerLabel, percent, used, quota, fill, tick,
      spark, sparkTitle, area, line, periodEnd, detailsSummary, caption, tbody,
    };
  }

  function updateRow(r, t, seriesStart) {
    const lvl = level(t);
    r.row.dataset.level = lvl;
    r.row.dataset.percent = String(t.quotaPercent);
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
    r.fill.style.width = Math.min(Math.max(t.quotaPercent, 0), 100) + "%";
    r.tick.hidden = t.alertAt > 100;
    r.tick.style.left = Math.min(t.alertAt, 100) + "%";

    drawSparkline(r, t.lastHour, seriesStart);

    r.periodEnd.dateTime = t.periodEnd;
    r.periodEnd.textContent = periodEnds.format(new Date(t.periodEnd)) + " UTC";

    const features = t.byFeature;
    r.detailsSummary.textContent =
      features.length === 1 ? "1 feature" : features.length + " features";
    r.caption.textContent = "Tokens by feature for " + t.tenantName;
    const body = document.createDocumentFragment();
    for (const f of features) {
      const tr = el("tr");
      const share = t.totalTokens > 0 ? (f.totalTokens * 100) / t.totalTokens : 0;
      tr.append(
        el("td", "", f.feature),
        el("td", "num", numbers.format(f.totalTokens)),
        el("td", "num", percents.format(share) + "\u00a0%"),
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
    return b.quotaPercent - a.quotaPercent || a.tenantName.localeCompare(b.tenantName) ||
      a.tenant.localeCompare(b.tenant);
  }

  function render(snapshot) {
    tenants = snapshot.tenants.slice().sort(byPercentThenName);
    const seen = new Set();
    for (const t of tenants) {
      let r = rows.get(t.tenant);
      if (!r) {
        r = createRow(t.tenant);
        rows.set(t.tenant, r);
      }
      updateRow(r, t, snapshot.seriesStart);
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

  function setState(next) {
    if (next === state) return;
    state = next;
    connection.dataset.state = next;
    connectionText.textContent = {
      connecting: "Connecting…",
      live: "Live",
      stale: "Connected, but the figures are not being refreshed",
      reconnecting: "Connection lost, reconnecting…",
      down: "Disconnected, retrying…",
    }[next];
  }

  function showFreshness() {
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

  function open() {
    setState(state === "" ? "connecting" : state);
    source = new EventSource("/api/usage/stream");
    source.addEventListener("open", () => {
      reopenDelay = 1000;
    });
    source.addEventListener("message", onMessage);
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. a proxy answered with an error): open
        // a new connection ourselves, backing off.
        source.close();
        setState("down");
        setTimeout(open, reopenDelay);
        reopenDelay = Math.min(reopenDelay * 2, REOPEN_MAX_MS);
      } else {
        setState("reconnecting");
      }
    });
  }

  filter.addEventListener("input", applyFilter);
  setInterval(showFreshness, 1000);
  open();
})();
