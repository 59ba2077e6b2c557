//! The real OpenTelemetry Python SDK and OTLP/HTTP exporter, configured
//! only through the standard environment variables, export GenAI spans to
//! `POST /v1/traces`; a real pipeline counts them to exact totals. The
//! script and its pinned packages are in `system-tests/otel`; they are
//! installed from PyPI into a git-ignored venv there on first run.

use std::{path::PathBuf, time::Duration};

use serde_json::json;
use testkit::{create_key, spawn_app};
use tokio::process::Command;

fn otel_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../system-tests/otel")
}

/// Runs `program args` in the otel directory; panics with its output if it
/// fails.
async fn run(program: &PathBuf, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .current_dir(otel_dir())
        .output()
        .await
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", program.display()));
    assert!(
        output.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The venv's Python with the pinned packages installed; `None` (the test
/// is skipped) only when there is no `python3` at all.
async fn python_with_the_sdk() -> Option<PathBuf> {
    let found = Command::new("python3").arg("--version").output().await;
    if !found.is_ok_and(|output| output.status.success()) {
        return None;
    }
    let venv = otel_dir().join(".venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        run(&PathBuf::from("python3"), &["-m", "venv", ".venv"]).await;
    }
    run(
        &python,
        &[
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            "requirements.txt",
        ],
    )
    .await;
    Some(python)
}

#[tokio::test]
async fn spans_exported_by_the_opentelemetry_python_sdk_are_counted_to_exact_totals() {
    let Some(python) = python_with_the_sdk().await else {
        eprintln!("SKIPPED: no python3 on PATH; the OpenTelemetry SDK test needs it");
        return;
    };
    let app = spawn_app().await;
    let _worker = app.env.spawn_pipeline("worker");
    let key = create_key(&app, json!({"name": "otel", "scopes": ["ingest"]})).await;

    let output = Command::new(&python)
        .arg("export_genai_spans.py")
        .current_dir(otel_dir())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &app.base)
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("Authorization=Bearer%20{}", key.secret),
        )
        .env("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let timeout = Duration::from_secs(20);
    let acme = app.wait_for_total("acme", 1257, timeout).await;
    app.wait_for_total("globex", 42, timeout).await;
    assert!(app.env.drained(timeout).await);
    let features: Vec<_> = acme["byFeature"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["feature"].as_str().unwrap().to_owned(),
                [
                    &f["inputTokens"],
                    &f["outputTokens"],
                    &f["cacheReadTokens"],
                    &f["cacheWriteTokens"],
                ]
                .map(|n| n.as_i64().unwrap()),
            )
        })
        .collect();
    assert!(
        features.contains(&("gpt-4o-2024-08-06".to_owned(), [300, 200, 600, 100])),
        "{features:?}"
    );
    assert!(
        features.contains(&("gpt-4o-mini".to_owned(), [50, 7, 0, 0])),
        "{features:?}"
    );
    let (_, acme_after) = app.get_json("/api/usage/acme").await;
    assert_eq!(acme_after["totalTokens"], 1257);
}
