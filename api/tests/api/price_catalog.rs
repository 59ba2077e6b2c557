//! `flagmeter-api prices import`: a LiteLLM-shaped catalog into price
//! versions, through the real binary and database.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use testkit::{TestApp, spawn_app};

/// Runs `flagmeter-api prices import` on the fixture catalog; returns
/// whether it succeeded, its stdout and its stderr.
fn import(app: &TestApp, effective_from: &str, dry_run: bool) -> (bool, String, String) {
    let catalog = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/litellm_prices.json"
    );
    let mut args = vec![
        "prices",
        "import",
        catalog,
        "--format",
        "litellm",
        "--effective-from",
        effective_from,
    ];
    if dry_run {
        args.push("--dry-run");
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flagmeter-api"))
        .args(args)
        .env("DATABASE_URL", &app.env.database_url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

async fn versions(app: &TestApp) -> Vec<Value> {
    let (status, body) = app.get_json("/api/prices").await;
    assert_eq!(status, 200);
    body["prices"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_litellm_catalog_adds_exact_versions_only_where_prices_changed_and_refuses_inexact_ones()
{
    let app = spawn_app().await;
    // gpt-4o-mini already has the catalog's prices; gpt-4o has others.
    let standing = Utc::now() - Duration::days(40);
    app.set_price("gpt-4o-mini", "0.15", "0.60", standing).await;
    app.set_price("gpt-4o", "5", "15", standing).await;
    let from = "2026-12-01T00:00:00Z";

    let (ok, stdout, stderr) = import(&app, from, true);
    assert!(!ok, "a refused model fails the run: {stderr}");
    assert!(
        stderr.contains("refused odd-model: input_cost_per_token = 3.3333333333333e-06"),
        "{stderr}"
    );
    assert!(stderr.contains("would add 2 price versions"), "{stderr}");
    assert!(
        stderr.contains("1 unchanged, 2 not priced per token, 1 refused"),
        "{stderr}"
    );
    assert!(stdout.contains("gpt-4o  input 2.500000 output 10.000000 cache-read 1.250000 cache-write 2.500000  (was input 5.000000"), "{stdout}");
    assert!(stdout.contains("anthropic/claude-3-5-sonnet-20241022  input 3.000000 output 15.000000 cache-read 0.300000 cache-write 3.750000  (no price)"), "{stdout}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert_eq!(versions(&app).await.len(), 2, "a dry run adds nothing");

    let (ok, real_stdout, stderr) = import(&app, from, false);
    assert!(!ok && stderr.contains("added 2 price versions"), "{stderr}");
    assert_eq!(real_stdout, stdout, "the dry run said what is added");
    let added: Vec<Value> = versions(&app)
        .await
        .into_iter()
        .filter(|v| {
            let at: DateTime<Utc> = v["effectiveFrom"].as_str().unwrap().parse().unwrap();
            at == from.parse::<DateTime<Utc>>().unwrap()
        })
        .collect();
    assert_eq!(added.len(), 2);
    let claude = added
        .iter()
        .find(|v| v["feature"] == "anthropic/claude-3-5-sonnet-20241022")
        .unwrap();
    assert_eq!(
        [
            &claude["inputPerMillion"],
            &claude["outputPerMillion"],
            &claude["cacheReadPerMillion"],
            &claude["cacheWritePerMillion"]
        ],
        ["3.000000", "15.000000", "0.300000", "3.750000"]
    );

    let (_, again, stderr) = import(&app, from, false);
    assert!(
        again.is_empty()
            && stderr.contains("added 0 price versions from")
            && stderr.contains("3 unchanged"),
        "{stderr}"
    );
    assert_eq!(versions(&app).await.len(), 4);
}
