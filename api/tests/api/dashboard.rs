//! The live dashboard: its page and event stream over plain HTTP, then the
//! real thing in headless Chromium, driven over the DevTools protocol.
//!
//! Chromium is required: `scripts/test` installs Debian's `chromium` when it
//! is missing, and the browser test fails (rather than passes silently) when
//! it cannot be found or started.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use api::{config::ApiConfig, startup::Application};
use chrono::{DateTime, Datelike, Utc};
use serde_json::{Value, json};
use testkit::env::event;
use tokio::{task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

use testkit::{
    TestApp, chromium::Browser, create_key, json, spawn_app, spawn_app_with, spawn_app_with_usage,
};

/// Reads SSE `data:` lines from `/api/usage/stream` until `done` holds for
/// one of them; returns the `retry:` hint seen and that message.
async fn read_stream(app: &TestApp, done: impl Fn(&Value) -> bool) -> (Option<u64>, Value) {
    let mut response = app.get("/api/usage/stream").await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(testkit::content_type(&response).starts_with("text/event-stream"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut buffer, mut retry) = (String::new(), None);
    loop {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("the stream delivers the expected message within 10 s")
            .unwrap()
            .expect("the stream stays open");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            for line in message.lines() {
                if let Some(ms) = line.strip_prefix("retry: ") {
                    retry = Some(ms.parse().unwrap());
                }
                if let Some(data) = line.strip_prefix("data: ") {
                    let data: Value = serde_json::from_str(data).unwrap();
                    if done(&data) {
                        return (retry, data);
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn the_stream_sends_a_retry_hint_then_every_tenant_with_its_last_hour() {
    let now = Utc::now();
    let app = spawn_app_with_usage(
        &[
            event("acme", "1", "gpt-4o", 600, now),
            event(
                "acme",
                "2",
                "claude-3-opus",
                400,
                now - chrono::Duration::minutes(3),
            ),
            event("globex", "3", "gpt-4o", 50, now),
        ],
        10_000,
    )
    .await;

    let (retry, snapshot) = read_stream(&app, |m| m["type"] == "snapshot").await;

    assert_eq!(retry, Some(2000), "a reconnection hint comes first");
    let tenants = snapshot["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 2, "{snapshot}");
    let acme = &tenants[0];
    assert_eq!(acme["tenant"], "acme");
    assert_eq!(acme["totalTokens"], 1000);
    assert_eq!(acme["quotaPercent"], 10.0);
    assert_eq!(acme["alertAt"], 80);
    assert_eq!(acme["reached"], json!([]), "10 % reaches no threshold");
    assert_eq!(acme["timezone"], "UTC");
    assert_eq!(
        (
            &acme["byFeature"][0]["cost"],
            &acme["byFeature"][0]["unpricedTokens"]
        ),
        (&json!("0.000000"), &json!(600)),
        "no price yet"
    );
    assert_eq!(acme["byFeature"][0]["feature"], "gpt-4o");
    let last_hour: Vec<i64> = acme["lastHour"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(last_hour.len(), 60);
    let series_start: DateTime<Utc> = snapshot["seriesStart"].as_str().unwrap().parse().unwrap();
    let minute_of = |t: DateTime<Utc>| ((t - series_start).num_seconds() / 60) as usize;
    let mut expected = vec![0; 60];
    expected[minute_of(now)] += 600;
    expected[minute_of(now - chrono::Duration::minutes(3))] += 400;
    assert_eq!(last_hour, expected);
    assert_eq!(tenants[1]["lastHour"].as_array().unwrap().len(), 60);

    // Unchanged figures come as heartbeats.
    let (_, heartbeat) = read_stream(&app, |m| m["type"] == "heartbeat").await;
    assert!(heartbeat["asOf"].is_string(), "{heartbeat}");
}

#[tokio::test]
async fn the_stream_is_documented_and_does_not_hide_the_tenant_routes() {
    let app = spawn_app().await;
    let (_, spec) = app.get_json("/openapi.json").await;
    let stream = &spec["paths"]["/api/usage/stream"]["get"];
    let content = &stream["responses"]["200"]["content"]["text/event-stream"];
    assert!(content["schema"]["items"].is_object(), "{stream}");
    assert!(
        spec["components"]["schemas"]["DashboardSnapshot"].is_object(),
        "the snapshot schema is in the spec"
    );
    // A tenant's time series under `/api/usage/stream/...` is still routed
    // to the tenant routes.
    let (status, body) = app.get_json("/api/usage/stream/timeseries").await;
    assert_eq!((status, &body["error"]), (404, &json!("unknown tenant")));
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_by_the_binary() {
    let app = spawn_app().await;
    let response = app.get("/").await;
    assert_eq!(response.status().as_u16(), 200);
    let headers = response.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    let html = response.text().await.unwrap();
    assert!(
        html.contains(
            r#"<p id="waiting" class="notice" role="status">Waiting for the first figures"#
        ),
        "before its script runs, the page says what it waits for"
    );
    for external in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(!html.contains(external), "no CDN: found {external}");
    }
    for (path, content_type) in [
        ("/dashboard.css", "text/css"),
        ("/dashboard.js", "text/javascript"),
    ] {
        assert!(html.contains(path), "the page loads {path}");
        let response = app.get(path).await;
        assert_eq!(response.status().as_u16(), 200);
        assert!(testkit::content_type(&response).starts_with(content_type));
        let text = response.text().await.unwrap();
        assert!(
            !text.contains("url(") && !text.contains("@import"),
            "no fetches from {path}"
        );
        if path.ends_with(".js") {
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
            ] {
                assert!(
                    !text.contains(sink),
                    "tenant data never goes through {sink}"
                );
            }
        }
    }
    let response = app.post("/", &json!({})).await;
    assert_eq!(response.status().as_u16(), 405);
    assert!(
        response.json::<Value>().await.unwrap()["error"].is_string(),
        "a JSON error"
    );
}

// ---------------------------------------------------------------------------
// In a browser.

/// Longest wait for any one thing the browser should show.
const UI_TIMEOUT: Duration = Duration::from_secs(15);

/// An api the browser watches, on an address it keeps across restarts.
struct WatchedApi {
    config: ApiConfig,
    base: String,
    shutdown: CancellationToken,
    running: JoinHandle<std::io::Result<()>>,
}

impl WatchedApi {
    async fn start(mut config: ApiConfig) -> Self {
        let app = Application::build(config.clone())
            .await
            .expect("the api builds");
        config.api_addr = app.addr();
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Self {
            base: format!("http://{}", config.api_addr),
            config,
            shutdown,
            running,
        }
    }

    /// Stops the api; open dashboard streams must not hold it up.
    async fn stop(self) -> ApiConfig {
        let started = Instant::now();
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.running)
            .await
            .expect("the api stops within 5 s although a dashboard is open")
            .unwrap()
            .unwrap();
        note(&format!("api stopped in {:?}", started.elapsed()));
        self.config
    }
}

/// Waiting for the dashboard to show something, describing what it shows
/// instead on failure.
trait Shows {
    async fn shows(&mut self, what: &str, expression: &str) -> Value;
}

impl Shows for Browser {
    async fn shows(&mut self, what: &str, expression: &str) -> Value {
        self.wait_for(what, expression, UI_TIMEOUT, STATE).await
    }
}

/// Where screenshots go: `target/test-artifacts`.
fn artifacts_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("test-artifacts")
}

/// A line in the test's output (shown with `--nocapture`).
fn note(what: &str) {
    eprintln!("[dashboard test] {what}");
}

/// Takes a screenshot named `name`, asserting that it was written and is
/// not empty.
async fn checked_screenshot(browser: &mut Browser, name: &str) {
    let shot = browser.screenshot(name).await;
    let size = std::fs::metadata(&shot)
        .expect("the screenshot is written")
        .len();
    assert!(size > 1_000, "{} holds only {size} bytes", shot.display());
    note(&format!("screenshot: {}", shot.display()));
}

/// Where the page keeps its API key in the tab's session storage.
const KEY_STORAGE: &str = "flagmeter.dashboard.apiKey";

/// Live again with the figures of the tenant posted after the restart.
const LIVE_AFTER_RESTART: &str = r##"document.querySelector('li[data-tenant="after-restart"]') !== null
   && document.getElementById('connection').dataset.state === 'live'"##;

/// What the page shows, as JSON: connection state, whether it asks for a
/// key (and holds one), and every row in order.
const STATE: &str = r##"JSON.stringify({
  href: location.href,
  connection: document.getElementById("connection").dataset.state,
  connectionText: document.getElementById("connection-text").textContent,
  keyForm: !document.getElementById("key-form").hidden,
  forgetButton: !document.getElementById("forget").hidden,
  keyStored: sessionStorage.getItem("flagmeter.dashboard.apiKey") !== null,
  summary: document.getElementById("summary").textContent,
  waiting: !document.getElementById("waiting").hidden,
  rows: Array.from(document.querySelectorAll("#tenants > li")).map((li) => {
    const marker = li.querySelector(".marker");
    return {
      tenant: li.dataset.tenant,
      hidden: li.hidden,
      name: li.querySelector(".tenant-name").textContent,
      level: li.dataset.level,
      percent: li.querySelector(".percent").textContent,
      tokens: li.querySelector(".tokens").textContent,
      spend: li.querySelector(".spend").hidden ? "" : li.querySelector(".spend").textContent,
      bars: Array.from(li.querySelectorAll(".bar"))
        .map((bar) => (bar.hidden ? "" : bar.dataset.level)),
      marker: marker.hidden ? "" : marker.textContent,
      period: li.querySelector(".period").textContent,
      features: li.querySelector("summary").textContent,
      spark: li.querySelector(".spark").getAttribute("aria-label") || "",
    };
  }),
})"##;

/// Opens `details` of `tenant`'s row; returns the header and cells of its
/// feature table.
const FEATURE_TABLE: &str = r##"(tenant) => {
  const d = document.querySelector(`li[data-tenant="${tenant}"] details`);
  d.open = true;
  return Array.from(d.querySelectorAll("tr"))
    .map((tr) => Array.from(tr.cells).map((c) => c.textContent));
}"##;

/// `value` percent-encoded for a URL's fragment.
fn fragment_encoded(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn page_state(browser: &mut Browser) -> Value {
    serde_json::from_str(browser.eval(STATE).await.as_str().unwrap()).unwrap()
}

fn row<'a>(state: &'a Value, tenant: &str) -> &'a Value {
    state["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["tenant"] == tenant)
        .unwrap_or_else(|| panic!("no row for {tenant}: {state}"))
}

/// Types `key` into the page's key form, as a person would, and submits it.
async fn type_key(browser: &mut Browser, key: &str) {
    browser.eval("document.getElementById('key').focus()").await;
    browser
        .page("Input.insertText", json!({ "text": key }))
        .await;
    browser
        .eval("document.querySelector('#key-form button[type=submit]').click()")
        .await;
}

async fn post_usage(app: &TestApp, tenant: &str, feature: &str, tokens: i64) {
    app.post_event(&json!({ "tenant": tenant, "feature": feature, "tokens": tokens }))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_usage_live_in_a_browser_and_recovers_after_a_restart() {
    let mut captured = None;
    let app = spawn_app_with(|config| captured = Some(config.clone())).await;
    let pipeline = app.env.spawn_pipeline("w");
    app.put_tenant(
        "acme-corp",
        json!({ "name": "Acme <b>Corp</b> & Sons", "monthlyQuota": 10_000, "monthlyBudget": "1.00" }),
    )
    .await;
    app.set_standing_price("gpt-4o", "2", "8").await;
    app.put_tenant(
        "globex-inc",
        json!({ "monthlyQuota": 100_000, "alertThresholds": [90, 100] }),
    )
    .await;
    app.put_tenant("initech", json!({ "monthlyQuota": 1_000_000 }))
        .await;
    post_usage(&app, "acme-corp", "gpt-4o", 5_000).await;
    post_usage(&app, "acme-corp", "claude-3-opus", 3_500).await;
    post_usage(&app, "globex-inc", "gpt-4o", 82_000).await;
    post_usage(&app, "initech", "gpt-4o", 50_000).await;
    for (tenant, tokens) in [
        ("acme-corp", 8_500),
        ("globex-inc", 82_000),
        ("initech", 50_000),
    ] {
        app.wait_for_total(tenant, tokens, Duration::from_secs(10))
            .await;
    }

    // The browser watches an api of its own (same database and stream), so
    // that the test can restart it at the same address.
    let watched = WatchedApi::start(captured.expect("the config")).await;
    let mut browser = Browser::launch(artifacts_dir()).await;
    // The key comes in the address's fragment (never sent to the server).
    let admin_key = app.admin_key.clone();
    browser
        .navigate(&format!(
            "{}/#key={}",
            watched.base,
            fragment_encoded(&admin_key)
        ))
        .await;
    browser
        .shows(
            "three tenants",
            "document.querySelectorAll('#tenants > li').length === 3",
        )
        .await;
    let state = page_state(&mut browser).await;
    assert_eq!(state["connection"], "live", "{state}");
    // It is taken out of the address at once (replacing the history entry
    // that had it), and kept in the tab's session storage instead.
    assert_eq!(
        state["href"],
        json!(format!("{}/", watched.base)),
        "no key left in the address bar"
    );
    assert_eq!(
        browser
            .eval(&format!("sessionStorage.getItem({KEY_STORAGE:?})"))
            .await,
        json!(admin_key)
    );
    assert_eq!(
        (&state["keyForm"], &state["forgetButton"]),
        (&json!(false), &json!(true)),
        "no key form while connected, and a way to forget the key: {state}"
    );
    assert_eq!(
        json::texts(&state["rows"], "tenant"),
        ["acme-corp", "globex-inc", "initech"],
        "by percent used"
    );

    let acme = row(&state, "acme-corp");
    assert_eq!(acme["name"], "Acme <b>Corp</b> & Sons", "the name as text");
    assert_eq!(acme["percent"], "85.0\u{a0}%");
    assert_eq!(acme["tokens"], "8,500 of 10,000 tokens");
    assert_eq!(
        acme["spend"],
        "Cost 0.01 of 1.00 USD budget (1.0\u{a0}%) \u{b7} 3,500 tokens without a price",
        "unpriced tokens beside the cost"
    );
    assert_eq!(acme["bars"], json!(["over", "ok"]), "quota, then budget");
    assert_eq!(acme["level"], "over");
    assert!(
        acme["marker"]
            .as_str()
            .unwrap()
            .contains("at or over 80\u{a0}%"),
        "marked in words, not only in red: {acme}"
    );
    assert_eq!(acme["features"], "2 features");
    assert!(
        acme["spark"].as_str().unwrap().contains("8,500 in total"),
        "{acme}"
    );
    assert!(acme["period"].as_str().unwrap().starts_with("Period ends "));
    // 82 % is past 80 but below this tenant's own first threshold (90): near.
    let globex = row(&state, "globex-inc");
    assert_eq!(globex["percent"], "82.0\u{a0}%");
    assert_eq!(globex["level"], "near");
    assert!(globex["marker"].as_str().unwrap().contains("near 90"));
    let initech = row(&state, "initech");
    assert_eq!(
        (&initech["level"], &initech["marker"]),
        (&json!("ok"), &json!(""))
    );
    assert_eq!(initech["tokens"], "50,000 of 1,000,000 tokens");
    assert_eq!(initech["spend"], "Cost 0.10 USD", "a cost without a budget");
    assert_eq!(row(&state, "globex-inc")["spend"], "Cost 0.164 USD");
    assert_eq!(
        browser
            .eval("document.querySelectorAll('#tenants b').length")
            .await,
        0,
        "no markup from tenant data"
    );

    // The per-feature breakdown, and the filter box.
    let features = browser
        .eval(&format!("({FEATURE_TABLE})('acme-corp')"))
        .await;
    assert_eq!(
        features,
        json!([
            ["Feature", "Tokens", "Share", "Cost (USD)"],
            ["gpt-4o", "5,000", "58.8\u{a0}%", "0.01"],
            ["claude-3-opus", "3,500", "41.2\u{a0}%", "no price"]
        ])
    );
    let shown = browser
        .eval(
            r##"(() => {
              const f = document.getElementById("filter");
              f.value = "GLOB";
              f.dispatchEvent(new Event("input"));
              const shown = Array.from(document.querySelectorAll("#tenants > li"))
                .filter((li) => !li.hidden).map((li) => li.dataset.tenant);
              f.value = "";
              f.dispatchEvent(new Event("input"));
              return shown;
            })()"##,
        )
        .await;
    assert_eq!(shown, json!(["globex-inc"]));

    // A tenant seen for the first time appears without a reload.
    browser.eval("window.notReloaded = true").await;
    let posted = Instant::now();
    post_usage(&app, "hooli-xyz", "gpt-4o", 900_000).await;
    browser
        .shows(
            "the new tenant",
            r##"document.querySelector('li[data-tenant="hooli-xyz"]') !== null"##,
        )
        .await;
    note(&format!("a new tenant showed after {:?}", posted.elapsed()));
    assert_eq!(browser.eval("window.notReloaded === true").await, true);
    let state = page_state(&mut browser).await;
    let hooli = row(&state, "hooli-xyz");
    assert_eq!(
        (&hooli["percent"], &hooli["level"]),
        (&json!("90.0\u{a0}%"), &json!("over"))
    );
    assert_eq!(state["rows"][0]["tenant"], "hooli-xyz", "highest first");
    assert_eq!(
        browser
            .eval(r##"document.querySelector('li[data-tenant="acme-corp"] details').open"##)
            .await,
        true,
        "an expanded row stays expanded across updates"
    );
    checked_screenshot(&mut browser, "dashboard.png").await;

    // At phone width nothing overflows sideways.
    browser
        .page(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true }),
        )
        .await;
    browser
        .shows(
            "the phone layout",
            "window.innerWidth === 390 && document.documentElement.scrollWidth <= 390",
        )
        .await;
    checked_screenshot(&mut browser, "dashboard-phone.png").await;
    browser
        .page("Emulation.clearDeviceMetricsOverride", json!({}))
        .await;

    // The api restarts: the page says it lost the connection, then comes
    // back by itself with fresh figures.
    let config = watched.stop().await;
    browser
        .shows(
            "the connection as down",
            "document.getElementById('connection').dataset.state !== 'live'",
        )
        .await;
    let watched = WatchedApi::start(config).await;
    post_usage(&app, "after-restart", "gpt-4o", 10).await;
    browser
        .shows("the tenant posted after the restart", LIVE_AFTER_RESTART)
        .await;
    assert_eq!(browser.eval("window.notReloaded === true").await, true);
    assert_eq!(
        browser
            .eval(&format!("sessionStorage.getItem({KEY_STORAGE:?})"))
            .await,
        json!(admin_key),
        "the key survives a reconnection"
    );
    // A new page in the same tab takes the key from the session storage.
    browser.navigate(&format!("{}/", watched.base)).await;
    browser
        .shows(
            "the figures again after a reload",
            r##"window.notReloaded === undefined
               && document.querySelector('li[data-tenant="after-restart"]') !== null
               && document.getElementById('connection')?.dataset.state === 'live'"##,
        )
        .await;

    // A new tab, without a key in its address or its session storage: the
    // page asks for one, and shows no figures.
    browser.new_tab().await;
    browser.navigate(&format!("{}/", watched.base)).await;
    browser
        .shows(
            "the key form",
            "document.getElementById('key-form')?.hidden === false",
        )
        .await;
    // Figures would have arrived within this time, had the page connected.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let state = page_state(&mut browser).await;
    assert_eq!(state["connection"], "no-key", "{state}");
    assert_eq!(state["rows"], json!([]), "no figures without a key");
    assert_eq!(state["keyStored"], false, "{state}");
    assert_eq!(
        browser
            .eval(
                r##"(() => {
                  const input = document.getElementById("key");
                  return input.type + " " + input.labels[0].textContent + " "
                    + document.querySelector("#key-form button[type=submit]").textContent;
                })()"##
            )
            .await,
        "password API key with read scope Connect",
        "a labelled password field and a Connect button"
    );
    checked_screenshot(&mut browser, "dashboard-key-form.png").await;

    // A wrong key, typed into the form: refused, forgotten, asked again.
    type_key(&mut browser, "not-a-real-key").await;
    browser
        .shows(
            "the key as refused",
            "document.getElementById('connection').dataset.state === 'refused'",
        )
        .await;
    let state = page_state(&mut browser).await;
    let said = state["connectionText"].as_str().unwrap();
    assert!(
        said.starts_with("Key refused: ") && said.len() > "Key refused: ".len(),
        "the server's reason is shown: {state}"
    );
    assert_eq!(
        (&state["keyForm"], &state["keyStored"], &state["rows"]),
        (&json!(true), &json!(false), &json!([])),
        "the form again, the key forgotten, no figures: {state}"
    );
    checked_screenshot(&mut browser, "dashboard-key-refused.png").await;
    // It does not retry with a refused key.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(page_state(&mut browser).await["connection"], "refused");

    // A valid key without the read scope (403), put into the address of
    // the open page: refused as well, and taken out of the address.
    let ingest_key = create_key(&app, json!({ "name": "ingest only", "scopes": ["ingest"] }))
        .await
        .secret;
    browser
        .eval("document.getElementById('connection-text').textContent = ''")
        .await;
    browser
        .navigate(&format!(
            "{}/#key={}",
            watched.base,
            fragment_encoded(&ingest_key)
        ))
        .await;
    browser
        .shows(
            "the key without the read scope as refused",
            "document.getElementById('connection').dataset.state === 'refused'
               && document.getElementById('connection-text').textContent !== ''",
        )
        .await;
    let state = page_state(&mut browser).await;
    assert!(
        state["connectionText"]
            .as_str()
            .unwrap()
            .starts_with("Key refused: "),
        "{state}"
    );
    assert_eq!(
        (&state["href"], &state["keyForm"], &state["keyStored"]),
        (
            &json!(format!("{}/", watched.base)),
            &json!(true),
            &json!(false)
        ),
        "{state}"
    );

    // The right key, typed into the form: the figures; then "Forget key".
    type_key(&mut browser, &admin_key).await;
    browser
        .shows("the figures with a typed key", LIVE_AFTER_RESTART)
        .await;
    let state = page_state(&mut browser).await;
    assert_eq!(
        (
            &state["keyForm"],
            &state["keyStored"],
            &state["forgetButton"]
        ),
        (&json!(false), &json!(true), &json!(true)),
        "{state}"
    );
    assert_eq!(
        browser.eval("document.getElementById('key').value").await,
        "",
        "the typed key does not stay in the field"
    );
    browser
        .eval("document.getElementById('forget').click()")
        .await;
    let state = page_state(&mut browser).await;
    assert_eq!(
        (
            &state["connection"],
            &state["keyForm"],
            &state["keyStored"],
            &state["rows"]
        ),
        (&json!("no-key"), &json!(true), &json!(false), &json!([])),
        "forgotten, with its figures: {state}"
    );

    browser.close().await;
    watched.stop().await;
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_says_it_waits_then_flags_budgets_with_costs_and_local_period_ends() {
    let app = spawn_app().await;
    let now = Utc::now();
    app.set_standing_price("gpt-4o", "2", "8").await;
    app.set_price("claude-3-haiku", "1", "4", now - chrono::Duration::hours(6))
        .await;
    // 94 % of its budget, under 1 % of its quota.
    app.put_tenant(
        "budget-co",
        json!({ "monthlyQuota": 100_000_000, "monthlyBudget": "1.00" }),
    )
    .await;
    // Billed in New York from a day that began at least a day ago (the
    // 1st, or the 28th on the 1st), so that its period holds the last 12
    // hours.
    let new_york = domain::period::zone_named("America/New_York");
    let billing_day: i16 = if now.with_timezone(&new_york).day() >= 2 {
        1
    } else {
        28
    };
    app.put_tenant(
        "nyc-co",
        json!({
            "monthlyQuota": 1_000_000,
            "monthlyBudget": "10.00",
            "timezone": "America/New_York",
            "billingDay": billing_day,
        }),
    )
    .await;
    let hours_ago = |hours| now - chrono::Duration::hours(hours);
    app.env
        .write(
            &[
                event("budget-co", "1", "gpt-4o", 470_000, now),
                event("nyc-co", "2", "gpt-4o", 100_000, now),
                // Before its price took effect, then after.
                event("nyc-co", "3", "claude-3-haiku", 30_000, hours_ago(12)),
                event("nyc-co", "4", "claude-3-haiku", 10_000, now),
                event("nyc-co", "5", "in-house-model", 25_000, now),
            ],
            1_000_000,
        )
        .await;
    let (_, alerts) = app.get_json("/api/tenants/budget-co/alerts").await;
    assert_eq!(
        json::texts(&alerts, "kind"),
        ["budget"],
        "the budget alert fired"
    );

    let mut browser = Browser::launch(artifacts_dir()).await;
    // The live figures held back: what the page shows before they come.
    browser
        .page(
            "Fetch.enable",
            json!({ "patterns": [{ "urlPattern": "*/api/usage/stream" }] }),
        )
        .await;
    browser
        .navigate(&format!(
            "{}/#key={}",
            app.base,
            fragment_encoded(&app.admin_key)
        ))
        .await;
    browser
        .shows(
            "that it waits for the figures",
            &format!(
                "sessionStorage.getItem({KEY_STORAGE:?}) !== null
                   && document.getElementById('waiting').hidden === false"
            ),
        )
        .await;
    let state = page_state(&mut browser).await;
    assert_eq!(
        (&state["connection"], &state["connectionText"]),
        (
            &json!("connecting"),
            &json!("Connecting to the live figures\u{2026}")
        ),
        "{state}"
    );
    assert_eq!(state["rows"], json!([]), "{state}");
    let waiting = browser
        .eval("document.getElementById('waiting').textContent")
        .await;
    assert!(
        waiting
            .as_str()
            .unwrap()
            .starts_with("Waiting for the first figures"),
        "{waiting}"
    );
    checked_screenshot(&mut browser, "dashboard-waiting.png").await;

    // Let them through.
    browser.page("Fetch.disable", json!({})).await;
    browser
        .shows(
            "the two tenants",
            "document.querySelectorAll('#tenants > li').length === 2",
        )
        .await;
    let state = page_state(&mut browser).await;
    assert_eq!(state["waiting"], false, "{state}");
    assert_eq!(
        state["summary"], "2 tenants, 1 at or over the alert threshold",
        "the budget crossing is counted"
    );
    assert_eq!(
        json::texts(&state["rows"], "tenant"),
        ["budget-co", "nyc-co"],
        "by the higher of quota and budget shares"
    );

    let budget = row(&state, "budget-co");
    assert_eq!(budget["level"], "over", "{budget}");
    assert_eq!(budget["marker"], "\u{25b2} Budget at or over 80\u{a0}%");
    assert_eq!(budget["percent"], "0.5\u{a0}%");
    assert_eq!(
        budget["spend"],
        "Cost 0.94 of 1.00 USD budget (94.0\u{a0}%)"
    );
    assert_eq!(budget["bars"], json!(["ok", "over"]), "quota, then budget");
    assert_eq!(
        budget["period"]
            .as_str()
            .unwrap()
            .rsplit_once(' ')
            .unwrap()
            .1,
        "(UTC)"
    );

    let nyc = row(&state, "nyc-co");
    assert_eq!((&nyc["level"], &nyc["marker"]), (&json!("ok"), &json!("")));
    assert_eq!(nyc["tokens"], "165,000 of 1,000,000 tokens");
    assert_eq!(
        nyc["spend"],
        "Cost 0.21 of 10.00 USD budget (2.1\u{a0}%) \u{b7} 55,000 tokens without a price",
        "unpriced tokens beside a cost and a budget"
    );
    let period = domain::period::BillingPeriod::containing(now, billing_day, new_york);
    let local_end = period.end.with_timezone(&new_york);
    assert_eq!(
        nyc["period"].as_str().unwrap().replace('\u{202f}', " "),
        format!(
            "Period ends {}, 12:00 AM (America/New_York)",
            local_end.format("%b %-d, %Y")
        ),
        "local midnight, in the tenant's zone"
    );
    let features = browser.eval(&format!("({FEATURE_TABLE})('nyc-co')")).await;
    assert_eq!(
        features,
        json!([
            ["Feature", "Tokens", "Share", "Cost (USD)"],
            ["gpt-4o", "100,000", "60.6\u{a0}%", "0.20"],
            [
                "claude-3-haiku",
                "40,000",
                "24.2\u{a0}%",
                "0.01 + 30,000 tokens without a price"
            ],
            ["in-house-model", "25,000", "15.2\u{a0}%", "no price"]
        ])
    );
    checked_screenshot(&mut browser, "dashboard-budgets.png").await;

    browser.close().await;
}
