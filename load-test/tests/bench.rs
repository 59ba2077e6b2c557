//! The real `flagmeter-bench` against the debug `flagmeter-api` and
//! `flagmeter-pipeline` beside it (build them first: `cargo build -p api -p
//! pipeline`, as for the fault suite), on a database, ports and stream of
//! this test's own: a small audited drain, and alert latency at idle with
//! every delivery's signature verified.

use std::{path::PathBuf, process::Output};

use sea_orm::{ConnectionTrait, Database};

/// Where `cargo test` put the binaries: the api and the pipeline are there
/// once built.
fn binaries() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_flagmeter-bench"))
        .parent()
        .expect("a binary lives in a directory")
        .to_path_buf()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Runs the bench with `args` on a database of its own, which is dropped
/// afterwards.
async fn bench(args: &[&str]) -> (Output, String) {
    let database = format!("flagmeter_bench_test_{}", uuid::Uuid::now_v7().simple());
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(&database);
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_flagmeter-bench"))
        .arg("--bin")
        .arg(binaries())
        .arg("--out")
        .arg(&out)
        .args(["--runs", "1", "--database", &database])
        .args(["--port", &free_port().to_string()])
        // Replica n serves metrics on this port + n.
        .args(["--metrics-port", &(free_port() - 1).to_string()])
        .args(args)
        .env_remove("CLUSTER")
        .env_remove("SHARDS")
        .kill_on_drop(true)
        .output()
        .await
        .expect("flagmeter-bench runs");
    let admin = Database::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .expect("PostgreSQL answers");
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await
        .expect("the bench database is dropped");
    std::fs::remove_dir_all(&out).ok();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    (output, stdout)
}

#[tokio::test]
async fn a_drain_is_timed_and_audited_to_the_token() {
    let (output, stdout) = bench(&["drain", "3000", "2", "5"]).await;

    assert!(output.status.success());
    let line = stdout
        .lines()
        .find(|l| l.starts_with("drain "))
        .expect("a line for the run");
    assert!(line.contains("events=3000 "), "{line}");
    assert!(line.contains("audit_match=true"), "{line}");
    assert!(stdout.contains("| 5 | 2 | **"), "{stdout}");
    assert!(stdout.contains("1/1 match"), "{stdout}");
}

#[tokio::test]
async fn alerts_are_timed_from_the_crossing_event_to_a_verified_delivery() {
    let (output, stdout) = bench(&["alert-latency", "--samples", "3", "--background", "0"]).await;

    assert!(output.status.success());
    assert!(
        stdout.contains("alert-latency run 1 idle: alerts=3 "),
        "{stdout}"
    );
    assert!(stdout.contains("| idle | 1 | 3 | "), "{stdout}");
}
