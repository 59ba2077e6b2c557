//! Keys that expire, and what a tenant-bound key may leave out: an expired
//! key gets a 401 "expired", and `GET /api/events` by a key bound to a
//! tenant lists that tenant's events without naming it.

use chrono::{Duration as Span, SecondsFormat, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};
use testkit::{assert_client_error, create_key, env as testing, json, spawn_app};

#[tokio::test]
async fn a_key_works_until_its_expiry_and_then_gets_a_401_expired() {
    let app = spawn_app().await;
    let in_an_hour = (Utc::now() + Span::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let live = create_key(
        &app,
        json!({"name": "trial", "scopes": ["read"], "expiresAt": in_an_hour}),
    )
    .await;
    let lapsed = create_key(
        &app,
        json!({"name": "old trial", "scopes": ["read"], "expiresAt": in_an_hour}),
    )
    .await;
    // Its expiry moved into the past before its first use: nothing cached.
    app.env
        .db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE id = $1::uuid",
            [lapsed.id.clone().into()],
        ))
        .await
        .unwrap();

    let refused = assert_client_error(lapsed.get("/api/usage").await, 401).await;
    let works = live.get("/api/usage").await;

    assert_eq!(refused["error"], "expired", "{refused}");
    assert!(
        refused["details"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("expired at")),
        "{refused}"
    );
    assert_eq!(works.status().as_u16(), 200);
    let (_, listed) = app.get_json("/api/keys").await;
    let keys = listed["keys"].as_array().unwrap();
    let find = |id: &str| keys.iter().find(|k| k["id"] == id).unwrap().clone();
    let live_info = find(&live.id);
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(live_info["expiresAt"].as_str().unwrap()).unwrap(),
        chrono::DateTime::parse_from_rfc3339(&in_an_hour).unwrap()
    );
    assert!(live_info["lastUsedAt"].is_string(), "{live_info}");
    // A refused use is not a use.
    assert!(find(&lapsed.id).get("lastUsedAt").is_none(), "{listed}");
}

#[tokio::test]
async fn a_key_without_expiry_never_expires_and_a_past_expiry_is_refused_by_name() {
    let app = spawn_app().await;
    let forever = create_key(&app, json!({"name": "ci", "scopes": ["read"]})).await;
    let yesterday = (Utc::now() - Span::days(1)).to_rfc3339();

    let refused = assert_client_error(
        app.post(
            "/api/keys",
            &json!({"name": "late", "scopes": ["read"], "expiresAt": yesterday}),
        )
        .await,
        400,
    )
    .await;
    let garbled = assert_client_error(
        app.post(
            "/api/keys",
            &json!({"name": "late", "scopes": ["read"], "expiresAt": "tomorrow"}),
        )
        .await,
        400,
    )
    .await;

    assert_eq!(refused["details"]["field"], "expiresAt", "{refused}");
    assert!(garbled.to_string().contains("expiresAt"), "{garbled}");
    assert_eq!(forever.get("/api/usage").await.status().as_u16(), 200);
    let (_, listed) = app.get_json("/api/keys").await;
    assert!(listed["keys"][0].get("expiresAt").is_none(), "{listed}");
    assert_eq!(listed["keys"].as_array().unwrap().len(), 1, "{listed}");
}

#[tokio::test]
async fn a_tenant_bound_key_lists_its_tenants_events_without_naming_it() {
    let app = spawn_app().await;
    let at = Utc::now() - Span::minutes(5);
    app.env
        .write(
            &[
                testing::event("acme", "a1", "gpt-4o", 10, at),
                testing::event("globex", "g1", "gpt-4o", 20, at),
            ],
            1_000_000,
        )
        .await;
    let acme = app.tenant_reader("acme").await;

    let own = acme.get("/api/events").await;
    let every_tenant = assert_client_error(app.get("/api/events").await, 400).await;

    assert_eq!(own.status().as_u16(), 200);
    let page: Value = own.json().await.unwrap();
    assert_eq!(json::texts(&page["events"], "id"), ["a1"]);
    assert_eq!(every_tenant["details"]["field"], "tenant", "{every_tenant}");
    assert_client_error(acme.get("/api/events?tenant=globex").await, 403).await;
}

#[tokio::test]
async fn the_keys_command_sets_an_expiry_and_refuses_a_past_one() {
    let app = spawn_app().await;
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_flagmeter-api"))
            .args(args)
            .env("DATABASE_URL", &app.env.database_url)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
        (
            output.status.success(),
            text(output.stdout),
            text(output.stderr),
        )
    };
    let tomorrow = (Utc::now() + Span::days(1)).to_rfc3339();
    let yesterday = (Utc::now() - Span::days(1)).to_rfc3339();

    let (ok, secret, stderr) = run(&[
        "keys",
        "create",
        "--name",
        "trial",
        "--scope",
        "read",
        "--expires-at",
        &tomorrow,
    ]);
    let (late_ok, _, late) = run(&[
        "keys",
        "create",
        "--name",
        "late",
        "--scope",
        "read",
        "--expires-at",
        &yesterday,
    ]);
    let (_, listing, _) = run(&["keys", "list"]);

    assert!(ok, "{stderr}");
    assert!(!late_ok && late.contains("expiresAt"), "{late}");
    assert!(listing.contains("active, expires"), "{listing}");
    let key = testkit::client_with_key(secret.trim());
    let usage = key
        .get(format!("{}/api/usage", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(usage.status().as_u16(), 200);
}
