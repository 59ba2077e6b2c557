//! A tenant's webhook receiver that verifies every delivery with the real
//! `standardwebhooks` package from PyPI, as an integrator's would, and
//! refuses (401) what does not verify, so that FlagMeter's signatures are
//! checked by someone else's code, not only by our reading of the spec
//! ([`crate::fake_slack`] checks them with its own HMAC). The receiver is a
//! small Python server on loopback (`python/standard_webhooks_receiver.py`)
//! whose trusted secrets a test changes as an integrator would after a
//! rotation.
//!
//! The package (pinned in `python/requirements.txt`) lives in a venv under
//! the target directory (git-ignored), made on first use; `scripts/test`
//! makes it before the suite runs, so that the suite itself reaches nothing
//! beyond this machine.

use std::{
    path::PathBuf,
    process::Stdio,
    sync::{Mutex, OnceLock},
    time::Duration,
};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/python/standard_webhooks_receiver.py"
);

/// The pinned packages the receiver needs.
const REQUIREMENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/requirements.txt");

/// The venv's Python, with the `REQUIREMENTS` installed (checked once
/// per test process, and installed when missing or at another version).
pub fn python() -> PathBuf {
    static READY: OnceLock<Mutex<Option<PathBuf>>> = OnceLock::new();
    let mut ready = READY
        .get_or_init(|| Mutex::new(None))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(python) = ready.as_ref() {
        return python.clone();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let venv = target.join("standard-webhooks-venv");
    let pip = venv.join("bin/pip");
    fn install<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["install", "--quiet", "--disable-pip-version-check"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-r", REQUIREMENTS]);
        args
    }
    // A dry run without an index succeeds only when all is installed.
    let installed = std::process::Command::new(&pip)
        .args(install(&["--dry-run", "--no-index"]))
        .output()
        .is_ok_and(|out| out.status.success());
    if !installed {
        let run = |program: &std::path::Path, args: &[&str]| {
            let status = std::process::Command::new(program)
                .args(args)
                .status()
                .unwrap_or_else(|err| panic!("cannot run {}: {err}", program.display()));
            assert!(
                status.success(),
                "{} {args:?} failed: the receiver needs {REQUIREMENTS} from PyPI \
                 (scripts/test installs them before the suite)",
                program.display()
            );
        };
        run("python3".as_ref(), &["-m", "venv", &venv.to_string_lossy()]);
        run(&pip, &install(&[]));
    }
    let python = venv.join("bin/python");
    *ready = Some(python.clone());
    python
}

/// One delivery the receiver got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub webhook_id: String,
    /// 204 if it verified, 401 if not.
    pub status: u16,
    /// Which of the trusted secrets (their order in [`Receiver::trust`])
    /// verified it.
    pub verified_by: Option<usize>,
    pub body: Value,
}

/// The receiver process, stopped when dropped.
pub struct Receiver {
    _process: tokio::process::Child,
    base: String,
    http: reqwest::Client,
}

impl Receiver {
    /// Starts a receiver that trusts no secret yet.
    pub async fn start() -> Self {
        let mut process = tokio::process::Command::new(python())
            .arg(SCRIPT)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the receiver starts");
        let stdout = process.stdout.take().expect("its stdout is piped");
        let mut first = String::new();
        tokio::time::timeout(
            Duration::from_secs(30),
            BufReader::new(stdout).read_line(&mut first),
        )
        .await
        .expect("the receiver says its port within 30 s")
        .expect("the receiver's stdout is readable");
        let port: u16 = first.trim().parse().expect("the receiver prints its port");
        Self {
            _process: process,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        }
    }

    /// Where FlagMeter delivers.
    pub fn url(&self) -> String {
        format!("{}/hooks/flagmeter", self.base)
    }

    /// Trusts exactly `secrets` (`whsec_...`) from now on, in this order.
    pub async fn trust(&self, secrets: &[&str]) {
        let response = self
            .http
            .put(format!("{}/trust", self.base))
            .json(&json!(secrets))
            .send()
            .await
            .expect("the receiver answers");
        assert_eq!(response.status().as_u16(), 204);
    }

    /// Every delivery so far, in the order received.
    pub async fn received(&self) -> Vec<Delivery> {
        let list: Vec<Value> = self
            .http
            .get(format!("{}/received", self.base))
            .send()
            .await
            .expect("the receiver answers")
            .json()
            .await
            .expect("a JSON list");
        list.into_iter()
            .map(|d| Delivery {
                webhook_id: d["webhookId"].as_str().unwrap_or_default().to_owned(),
                status: d["status"]
                    .as_u64()
                    .and_then(|s| s.try_into().ok())
                    .unwrap_or(0),
                verified_by: d["verifiedBy"].as_u64().map(|i| i as usize),
                body: serde_json::from_str(d["body"].as_str().unwrap_or("null"))
                    .unwrap_or(Value::Null),
            })
            .collect()
    }

    /// Polls until `n` deliveries have verified; returns every delivery.
    pub async fn wait_for_verified(&self, n: usize, timeout: Duration) -> Vec<Delivery> {
        let what = format!("{n} deliveries verified");
        crate::eventually(&what, timeout, || async {
            let received = self.received().await;
            let verified = received.iter().filter(|d| d.status == 204).count();
            if verified >= n {
                Ok(received)
            } else {
                Err(received)
            }
        })
        .await
    }
}
