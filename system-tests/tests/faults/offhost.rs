//! The off-host guard (`scripts/test`, `scripts/services.sh`) against real
//! attempts to leave this machine: the suite's own process, and a pipeline
//! binary it starts delivering an alert, each reach for a TEST-NET-2 canary
//! ([`testkit::offhost::CANARIES`]); the kernel refuses both at once and
//! records them. Run without the guard (a plain `cargo test`), there is
//! nothing to prove, and the test says so.

use std::{io::ErrorKind, net::IpAddr, time::Duration};

use chrono::Utc;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use testkit::{
    TestEnv,
    env::event,
    eventually,
    offhost::{self, CANARIES},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_to_reach_beyond_this_machine_is_refused_at_once_and_recorded() {
    if offhost::attempts().is_none() {
        eprintln!("no off-host guard (scripts/test installs it): nothing to prove here");
        return;
    }
    let [in_process, from_binary] = CANARIES.map(|c| c.parse::<IpAddr>().unwrap());

    let tried = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect((in_process, 9)),
    )
    .await;
    assert!(
        matches!(&tried, Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused),
        "refused at once, neither connected nor left hanging: {tried:?}"
    );

    // A tenant whose signed webhook is at the other canary, and an alert
    // for it, which a real pipeline binary then tries to deliver.
    let env = TestEnv::new().await;
    let now = Utc::now();
    env.write(&[event("acme", "1", "gpt-4o", 10, now)], 1000)
        .await;
    env.db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO tenant_webhooks (tenant, url, secret) VALUES ('acme', $1, $2)",
            [
                format!("http://{from_binary}:9/hook").into(),
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            ],
        ))
        .await
        .unwrap();
    env.write(&[event("acme", "2", "gpt-4o", 900, now)], 1000)
        .await;
    let allowed = format!("{from_binary}:9");
    let mut worker = crate::services(&env).spawn_pipeline(
        "offhost",
        &[("FLAGMETER_WEBHOOK_ALLOWED_HOSTS", allowed.as_str())],
    );
    let failed_attempts = eventually(
        "the binary's delivery is refused and will be retried",
        Duration::from_secs(30),
        || async {
            let row = env
                .db
                .query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT attempts, status FROM webhook_deliveries",
                ))
                .await
                .unwrap();
            let (attempts, status): (i32, String) = match row {
                Some(row) => (
                    row.try_get("", "attempts").unwrap(),
                    row.try_get("", "status").unwrap(),
                ),
                None => (0, "none".into()),
            };
            if attempts >= 1 && status == "pending" {
                Ok(attempts)
            } else {
                Err((attempts, status))
            }
        },
    )
    .await;
    worker.kill().await.unwrap();

    assert!(failed_attempts >= 1);
    let recorded = offhost::attempts().unwrap();
    assert!(
        recorded.contains(&in_process) && recorded.contains(&from_binary),
        "both attempts recorded: {recorded:?}"
    );
}
