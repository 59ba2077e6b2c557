//! Real processes for fault injection: pipeline replicas, a private
//! PostgreSQL cluster and a private Valkey/Redis with AOF, each of which a
//! test may kill and restart; and a client that keeps the books on what was
//! accepted.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use api::config::ApiConfig;
use runtime::config::DatabaseArgs;
use serde_json::json;
use stream::config::ValkeyArgs;
use tokio::process::{Child, Command};
use tokio_util::sync::{CancellationToken, DropGuard};

/// Where cargo put the binaries of this workspace: beside the directory of
/// this test executable (`target/<profile>/deps`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executables live in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (scripts/test), \
         or `cargo build -p api -p pipeline` first",
        path.display()
    );
    path
}

fn scratch_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What a metrics endpoint serves.
pub async fn scrape(url: &str) -> String {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample `name` (no labels) in a scrape, if it is there.
pub fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// Sends a signal by name (`TERM`, `KILL`) to a process.
pub async fn signal(pid: u32, name: &str) {
    let mut kill = Command::new("kill");
    kill.arg(format!("-{name}")).arg(pid.to_string());
    succeeds(&mut kill, &format!("kill -{name} {pid}")).await;
}

/// The bootstrap admin key of every api the suite starts.
pub const ADMIN_KEY: &str = "fault-suite-admin-key-not-secret";

/// An HTTP client that sends [`ADMIN_KEY`] with every request.
pub fn client() -> reqwest::Client {
    client_with_key(ADMIN_KEY)
}

/// An HTTP client that sends `key` with every request.
pub fn client_with_key(key: &str) -> reqwest::Client {
    testkit::bearer::client_builder(key)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Sends `request` and asserts that it is answered `status`, showing the
/// body when it is not; returns the response.
pub async fn expect_status(request: reqwest::RequestBuilder, status: u16) -> reqwest::Response {
    let response = request.send().await.unwrap();
    if response.status().as_u16() != status {
        let answered = response.status();
        panic!(
            "expected {status}, got {answered}: {}",
            response.text().await.unwrap()
        );
    }
    response
}

/// Where a stack's services are.
#[derive(Clone)]
pub struct Services {
    pub database_url: String,
    pub valkey_url: String,
    pub stream: String,
    pub group: String,
}

impl Services {
    /// The suite's api: [`testkit::app::api_config`] with larger limits.
    pub fn api_config(&self) -> ApiConfig {
        let valkey = ValkeyArgs::single(&self.valkey_url, &self.stream, &self.group);
        let database = DatabaseArgs {
            database_url: self.database_url.clone(),
            db_max_connections: 5,
        };
        let mut config = testkit::app::api_config(valkey, database, ADMIN_KEY);
        config.max_body_bytes = 1024 * 1024;
        config.stream_high_water = 10_000_000;
        // The suite's clients send as fast as they can: a limit would
        // refuse them, which is not what these tests are about.
        config.auth.rate_limit_per_sec = 0;
        config
    }

    /// A stack on a database of its own on `postgres` (which the test may
    /// crash), the suite's Valkey and a stream of its own.
    pub async fn on_private_postgres(postgres: &PrivatePostgres) -> Self {
        Self {
            database_url: create_database(&postgres.url()).await,
            valkey_url: testkit::env::valkey_url(),
            stream: format!("flagmeter-test:{}", uuid::Uuid::now_v7().simple()),
            group: "rollups".into(),
        }
    }

    /// Starts the api in this process; returns its base URL, and a guard
    /// that stops it when dropped (at the end of the test).
    pub async fn spawn_api(&self) -> (String, DropGuard) {
        let shutdown = CancellationToken::new();
        let base = testkit::app::serve(self.api_config(), &shutdown).await;
        (base, shutdown.drop_guard())
    }

    /// Starts the api as a real process (its metrics are its own, not
    /// those of the suite's in-process apis; a test may kill it), with
    /// `extra` settings, logging to `flagmeter-api-{port}.log` in the
    /// temporary directory; returns its base URL once it answers.
    pub async fn spawn_api_process(&self, extra: &[(&str, &str)]) -> (String, Child) {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let log =
            std::fs::File::create(std::env::temp_dir().join(format!("flagmeter-api-{port}.log")))
                .unwrap();
        let api = Command::new(bin("flagmeter-api"))
            .env("DATABASE_URL", &self.database_url)
            .env("VALKEY_URL", &self.valkey_url)
            .env("FLAGMETER_STREAM", &self.stream)
            .env("FLAGMETER_GROUP", &self.group)
            .env("FLAGMETER_API_ADDR", format!("127.0.0.1:{port}"))
            .env("FLAGMETER_ADMIN_KEY", ADMIN_KEY)
            .env("FLAGMETER_RATE_LIMIT_PER_SEC", "0")
            .env("FLAGMETER_RETRY_AFTER_SECS", "1")
            .env("FLAGMETER_DB_MAX_CONNECTIONS", "3")
            .env("RUST_LOG", "warn")
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start flagmeter-api");
        let http = client();
        testkit::eventually("the api answers", Duration::from_secs(30), || async {
            http.get(format!("{base}/api/health"))
                .send()
                .await?
                .error_for_status()
        })
        .await;
        (base, api)
    }

    /// Runs a replica that aborts right after its first COMMIT, before it
    /// acknowledges anything, and waits until it is gone.
    pub async fn crash_after_commit(&self) {
        let mut crasher =
            self.spawn_pipeline("crasher", &[("FLAGMETER_FAILPOINT", "crash-after-commit")]);
        let status = tokio::time::timeout(std::time::Duration::from_secs(30), crasher.wait())
            .await
            .expect("the crasher stops within 30 s")
            .expect("the crasher's status");
        assert!(!status.success(), "the failpoint aborted the worker");
    }

    /// Starts a pipeline replica as a real process.
    pub fn spawn_pipeline(&self, consumer: &str, extra: &[(&str, &str)]) -> Child {
        let log =
            std::fs::File::create(std::env::temp_dir().join(format!("flagmeter-{consumer}.log")))
                .unwrap();
        let mut command = Command::new(bin("flagmeter-pipeline"));
        command
            .env("DATABASE_URL", &self.database_url)
            .env("VALKEY_URL", &self.valkey_url)
            .env("FLAGMETER_STREAM", &self.stream)
            .env("FLAGMETER_GROUP", &self.group)
            .env("FLAGMETER_CONSUMER", consumer)
            .env("FLAGMETER_METRICS_ADDR", "127.0.0.1:0")
            .env("FLAGMETER_BATCH_SIZE", "100")
            .env("FLAGMETER_BLOCK_MS", "200")
            .env("FLAGMETER_CLAIM_IDLE_MS", "1500")
            .env("FLAGMETER_CLAIM_INTERVAL_MS", "300")
            .env("FLAGMETER_DB_MAX_CONNECTIONS", "3")
            .env("FLAGMETER_WEBHOOK_ALLOWED_HOSTS", "127.0.0.1:*")
            .env("FLAGMETER_WEBHOOK_ALLOW_INSECURE", "true")
            .env("FLAGMETER_ALERT_RETRY_BASE_MS", "100")
            .env("FLAGMETER_ALERT_POLL_MS", "100")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        for (key, value) in extra {
            command.env(key, value);
        }
        command.spawn().expect("start flagmeter-pipeline")
    }

    pub async fn valkey(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.valkey_url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// Waits until the group has nothing undelivered and nothing pending.
    pub async fn drained(&self, timeout: Duration) -> bool {
        testkit::env::drained(&self.valkey_url, &self.stream, &self.group, timeout).await
    }

    /// Per tenant, the tokens in the rollups and in the ledger, and the
    /// number of ledger rows.
    pub async fn counted(&self) -> HashMap<String, (i64, i64, i64)> {
        use sea_orm::ConnectionTrait;
        let db = sea_orm::Database::connect(&self.database_url)
            .await
            .unwrap();
        let rows = db
            .query_all_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT t.id AS tenant,
                        (SELECT coalesce(sum(total_tokens), 0) FROM daily_rollups d WHERE d.tenant = t.id)::bigint AS rolled,
                        (SELECT coalesce(sum(tokens), 0) FROM events e WHERE e.tenant = t.id)::bigint AS ledger,
                        (SELECT count(*) FROM events e WHERE e.tenant = t.id)::bigint AS rows
                 FROM tenants t",
            ))
            .await
            .unwrap();
        db.close().await.ok();
        rows.into_iter()
            .map(|r| {
                (
                    r.try_get("", "tenant").unwrap(),
                    (
                        r.try_get("", "rolled").unwrap(),
                        r.try_get("", "ledger").unwrap(),
                        r.try_get("", "rows").unwrap(),
                    ),
                )
            })
            .collect()
    }
}

/// What the client was told was accepted: per tenant, tokens and events.
#[derive(Clone, Default)]
pub struct Books(Arc<Mutex<HashMap<String, (i64, i64)>>>);

impl Books {
    pub fn expected(&self) -> HashMap<String, (i64, i64, i64)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(t, &(tokens, events))| (t.clone(), (tokens, tokens, events)))
            .collect()
    }
}

/// Outcome counts of a load run.
#[derive(Debug, Default, Clone, Copy)]
pub struct LoadReport {
    pub batches: u64,
    pub refused: u64,
}

/// Posts batches of `batch` events with unique ids until `stop`. A refused
/// or failed batch is retried with the same ids until it is accepted, as a
/// well-behaved client does, so every event is eventually accepted once.
async fn load(
    base: String,
    client: reqwest::Client,
    run: String,
    batch: usize,
    books: Books,
    stop: CancellationToken,
) -> LoadReport {
    let tenants = ["acme-corp", "globex-inc", "initech-llc"];
    let mut report = LoadReport::default();
    let mut n = 0usize;
    while !stop.is_cancelled() {
        let events: Vec<_> = (n..n + batch)
            .map(|i| {
                json!({"tenant": tenants[i % 3], "feature": "gpt-4o", "tokens": 100 + i % 5000, "id": format!("{run}-{i}")})
            })
            .collect();
        loop {
            let sent = client
                .post(format!("{base}/api/events/batch"))
                .json(&json!({ "events": events }))
                .send()
                .await;
            if sent.is_ok_and(|r| r.status().as_u16() == 202) {
                break;
            }
            report.refused += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut books = books.0.lock().unwrap();
        for i in n..n + batch {
            let entry = books.entry(tenants[i % 3].to_owned()).or_default();
            entry.0 += (100 + i % 5000) as i64;
            entry.1 += 1;
        }
        report.batches += 1;
        n += batch;
    }
    report
}

/// A [`load`] running in the background until stopped.
pub struct Loader {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<LoadReport>,
}

impl Loader {
    /// Starts a [`load`] of batches of `batch` events with ids `{run}-{n}`,
    /// booked in `books`.
    pub fn start(
        base: &str,
        client: reqwest::Client,
        run: &str,
        batch: usize,
        books: &Books,
    ) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(load(
            base.to_owned(),
            client,
            run.to_owned(),
            batch,
            books.clone(),
            stop.clone(),
        ));
        Self { stop, task }
    }

    /// Stops the load once its batch in hand is accepted; what it did.
    pub async fn stop(self) -> LoadReport {
        self.stop.cancel();
        self.task.await.expect("the load did not panic")
    }
}

/// A PostgreSQL cluster of the test's own, on a free port, that the test
/// may stop and start.
pub struct PrivatePostgres {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
}

/// Runs a command to its end (its output discarded); panics with `what`
/// unless it succeeds.
async fn succeeds(command: &mut Command, what: &str) {
    let status = command.stdout(Stdio::null()).status().await.unwrap();
    assert!(status.success(), "{what}");
}

fn as_postgres(program: &Path) -> Command {
    // initdb and postgres refuse to run as root.
    if nix_is_root() {
        let mut command = Command::new("runuser");
        command.arg("-u").arg("postgres").arg("--").arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn nix_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl PrivatePostgres {
    pub async fn start() -> Self {
        let versions =
            std::fs::read_dir("/usr/lib/postgresql").expect("PostgreSQL server binaries");
        let mut versions: Vec<PathBuf> =
            versions.filter_map(|e| e.ok().map(|e| e.path())).collect();
        versions.sort();
        let bin = versions.last().expect("a PostgreSQL version").join("bin");
        let dir = scratch_dir("flagmeter-pg");
        if nix_is_root() {
            let mut chown = Command::new("chown");
            chown.arg("-R").arg("postgres").arg(&dir);
            succeeds(&mut chown, "chown").await;
        }
        succeeds(
            as_postgres(&bin.join("initdb"))
                .arg("-D")
                .arg(dir.join("data"))
                .arg("--auth=trust")
                .arg("-U")
                .arg("postgres"),
            "initdb",
        )
        .await;
        let pg = Self {
            dir,
            bin,
            port: free_port(),
        };
        pg.up().await;
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub async fn up(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.display()
        );
        succeeds(
            as_postgres(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.join("data"))
                .arg("-o")
                .arg(options)
                .arg("-l")
                .arg(self.dir.join("log"))
                .arg("-w")
                .arg("start"),
            "pg_ctl start",
        )
        .await;
    }

    /// Stops at once, as a crash would (`-m immediate`).
    pub async fn crash(&self) {
        succeeds(
            as_postgres(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-m", "immediate", "-w", "stop"]),
            "pg_ctl stop",
        )
        .await;
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Valkey (or Redis) of the test's own, with AOF, that the test may kill.
pub struct PrivateValkey {
    dir: PathBuf,
    pub port: u16,
    fsync: &'static str,
    child: Option<Child>,
}

impl PrivateValkey {
    pub async fn start(fsync: &'static str) -> Self {
        let mut valkey = Self {
            dir: scratch_dir("flagmeter-valkey"),
            port: free_port(),
            fsync,
            child: None,
        };
        valkey.up().await;
        valkey
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn up(&mut self) {
        let server = testkit::cluster::installed(&["valkey-server", "redis-server"]);
        let child = Command::new(server)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", self.fsync])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        testkit::eventually(
            "the private Valkey started",
            Duration::from_secs(5),
            || async {
                let mut conn = client.get_multiplexed_async_connection().await?;
                redis::cmd("PING").query_async::<String>(&mut conn).await
            },
        )
        .await;
    }

    /// SIGKILL: no chance to flush anything.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }
}

impl Drop for PrivateValkey {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh database on a server, for a stack.
async fn create_database(server_url: &str) -> String {
    use sea_orm::ConnectionTrait;
    let name = format!("flagmeter_fault_{}", uuid::Uuid::now_v7().simple());
    let admin = sea_orm::Database::connect(server_url).await.unwrap();
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    admin.close().await.ok();
    let base = server_url.rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}
