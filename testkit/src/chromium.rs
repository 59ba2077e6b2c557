//! Headless Chromium driven over the DevTools protocol, for tests that look
//! at a page as a person would. Chromium is required: `scripts/test`
//! installs Debian's `chromium` when it is missing, and a test that needs it
//! fails (rather than passes silently) when it cannot be found or started.

use std::{path::PathBuf, process::Stdio, time::Duration};

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::TcpStream,
    process::{Child, Command},
    time::Instant,
};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

fn find_chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "Chromium is not installed, and the dashboard test needs it: run `scripts/test` \
                 (it installs Debian's `chromium`) or `apt-get install -y chromium`"
            )
        })
}

/// Headless Chromium with one page, driven over the DevTools protocol.
pub struct Browser {
    child: Child,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
    /// Where screenshots go.
    artifacts: PathBuf,
}

impl Browser {
    /// Starts Chromium with a throwaway profile; screenshots go to
    /// `artifacts`.
    pub async fn launch(artifacts: PathBuf) -> Self {
        let binary = find_chromium();
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--lang=en-US",
                "--window-size=1100,900",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .env("LANG", "en_US.UTF-8")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = BufReader::new(stderr).lines();
        let mut said = Vec::new();
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    return Some(url.trim().to_owned());
                }
                said.push(line);
            }
            None
        })
        .await;
        let Ok(Some(url)) = found else {
            panic!(
                "{} did not open its DevTools endpoint within 30 s; it said:\n{}",
                binary.display(),
                said.join("\n")
            );
        };
        // Keep reading its stderr, or Chromium blocks once the pipe is full.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap_or_else(|err| panic!("cannot connect to DevTools at {url}: {err}"));
        let mut browser = Self {
            child,
            ws,
            session: String::new(),
            next_id: 0,
            _profile: profile,
            artifacts,
        };
        browser.new_tab().await;
        browser
    }

    /// Opens a new tab (with a session storage of its own) and drives it
    /// from now on.
    pub async fn new_tab(&mut self) {
        let target = self
            .send(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let attached = self
            .send(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await;
        self.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
    }

    /// Sends one DevTools command (to the page, or with `None` to the
    /// browser) and returns its result; events in between are skipped.
    pub async fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        self.ws
            .send(Message::text(command.to_string()))
            .await
            .unwrap_or_else(|err| panic!("cannot send {method}: {err}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let message = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("Chromium did not answer {method} within 20 s"))
                .unwrap_or_else(|| panic!("Chromium closed DevTools during {method}"))
                .unwrap_or_else(|err| panic!("DevTools failed during {method}: {err}"));
            let Message::Text(text) = message else {
                continue;
            };
            let reply: Value = serde_json::from_str(text.as_str()).unwrap();
            if reply["id"] == id {
                assert!(reply["error"].is_null(), "{method} failed: {reply}");
                return reply["result"].clone();
            }
        }
    }

    pub async fn page(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(Some(&session), method, params).await
    }

    /// Opens `url` in the tab.
    pub async fn navigate(&mut self, url: &str) {
        self.page("Page.navigate", json!({ "url": url })).await;
    }

    /// The value of a JavaScript expression in the page.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .page(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        assert!(
            result["exceptionDetails"].is_null(),
            "`{expression}` threw: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is truthy, for up to `timeout`; returns
    /// that value. On timeout it fails with `what` and the value of
    /// `state`, an expression describing what the page shows instead.
    pub async fn wait_for(
        &mut self,
        what: &str,
        expression: &str,
        timeout: Duration,
        state: &str,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.eval(expression).await;
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() >= deadline {
                let state = self.eval(state).await;
                panic!("the page did not show {what} within {timeout:?}; it shows {state}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self
            .page("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::create_dir_all(&self.artifacts).unwrap();
        let path = self.artifacts.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Asks Chromium to quit (it may drop the connection before it
    /// answers), and kills it if it has not after 5 s.
    pub async fn close(mut self) {
        self.next_id += 1;
        let command = json!({ "id": self.next_id, "method": "Browser.close" });
        self.ws.send(Message::text(command.to_string())).await.ok();
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await.ok();
        }
    }
}
