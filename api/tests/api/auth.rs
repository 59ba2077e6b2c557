//! API keys: 401 without a valid key on every protected route, scopes and
//! tenant restrictions, revocation on every replica, rate limits, and
//! secrets that never reach the database.

use std::time::Duration;

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use testkit::{
    Key, TestApp, assert_client_error, client_with_key, create_key, spawn_app, spawn_app_with,
};

/// Sends `method path` with `key`'s client and a JSON body; the status.
async fn status(
    app: &TestApp,
    key: &reqwest::Client,
    method: &str,
    path: &str,
    body: Value,
) -> u16 {
    key.request(method.parse().unwrap(), format!("{}{path}", app.base))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `GET path` with `key`'s client (and a JSON `null` body); the status.
async fn get_status(app: &TestApp, key: &reqwest::Client, path: &str) -> u16 {
    status(app, key, "GET", path, json!(null)).await
}

/// `DELETE /api/keys/{id}` with the admin key.
async fn revoke(app: &TestApp, id: &str) -> reqwest::Response {
    app.delete(&format!("/api/keys/{id}")).await
}

fn event(tenant: &str) -> Value {
    json!({"tenant": tenant, "feature": "gpt-4o", "tokens": 10})
}

#[tokio::test]
async fn without_a_valid_key_every_protected_route_is_a_401_and_public_ones_answer() {
    let app = spawn_app().await;
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    // The scheme `/docs` offers to fill in ("Authorize").
    let scheme = &spec["components"]["securitySchemes"]["ApiKey"];
    assert_eq!(scheme["type"], "http", "{scheme}");
    assert_eq!(scheme["scheme"], "bearer", "{scheme}");
    let anonymous = reqwest::Client::new();
    let forged =
        client_with_key("fmk_0000000000000000000000000000000000000000000000000000000000000000");
    let mut protected = 0;
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let concrete = path
                .replace("{tenant}", "acme")
                .replace("{id}", "0194b9a2-8f1c-7000-8000-000000000000");
            let url = format!("{}{concrete}", app.base);
            let method = method.to_uppercase();
            if operation.get("security").is_none() {
                let response = anonymous
                    .request(method.parse().unwrap(), &url)
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success(), "public {method} {path}");
                continue;
            }
            protected += 1;
            for client in [&anonymous, &forged] {
                let response = client
                    .request(method.parse().unwrap(), &url)
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status().as_u16(), 401, "{method} {path}");
                assert!(
                    response.headers()["www-authenticate"]
                        .to_str()
                        .unwrap()
                        .starts_with("Bearer")
                );
                assert_client_error(response, 401).await;
            }
        }
    }
    assert!(protected >= 17, "{protected} protected operations");
    for public in [
        "/",
        "/dashboard.js",
        "/dashboard.css",
        "/docs",
        "/openapi.json",
        "/metrics",
        "/api/health",
        "/api/ready",
    ] {
        let response = anonymous
            .get(format!("{}{public}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{public}");
    }
    let basic = anonymous
        .get(format!("{}/api/usage/acme", app.base))
        .header("authorization", "Basic YWRtaW46YWRtaW4=")
        .send()
        .await
        .unwrap();
    assert_client_error(basic, 401).await;
}

#[tokio::test]
async fn each_scope_and_tenant_restriction_holds() {
    let app = spawn_app().await;
    let ingest = create_key(&app, json!({"name": "ingest", "scopes": ["ingest"]})).await;
    let read = create_key(&app, json!({"name": "read", "scopes": ["read"]})).await;
    let acme = create_key(
        &app,
        json!({"name": "acme", "scopes": ["ingest", "read"], "tenant": "acme"}),
    )
    .await;
    let admin = create_key(&app, json!({"name": "ops", "scopes": ["admin"]})).await;
    let tenant = json!({"monthlyQuota": 1000});

    // An ingest key ingests, and can neither read nor manage.
    assert_eq!(
        status(&app, &ingest.client, "POST", "/api/events", event("acme")).await,
        202
    );
    assert_eq!(
        status(
            &app,
            &ingest.client,
            "POST",
            "/api/events/batch",
            json!({"events": [event("globex")]})
        )
        .await,
        202
    );
    for (method, path, body) in [
        ("GET", "/api/usage/acme", json!(null)),
        ("GET", "/api/usage", json!(null)),
        ("PUT", "/api/tenants/acme", tenant.clone()),
        ("GET", "/api/tenants", json!(null)),
        ("GET", "/api/keys", json!(null)),
        (
            "POST",
            "/api/keys",
            json!({"name": "mine", "scopes": ["admin"]}),
        ),
    ] {
        assert_eq!(
            status(&app, &ingest.client, method, path, body).await,
            403,
            "ingest key: {method} {path}"
        );
    }

    // A read key reads every tenant, and cannot ingest or manage.
    assert_ne!(get_status(&app, &read.client, "/api/usage").await, 403);
    assert_ne!(
        get_status(&app, &read.client, "/api/usage/globex").await,
        403
    );
    assert_eq!(
        status(&app, &read.client, "POST", "/api/events", event("acme")).await,
        403
    );
    assert_eq!(
        status(
            &app,
            &read.client,
            "PUT",
            "/api/tenants/acme",
            tenant.clone()
        )
        .await,
        403
    );
    assert_eq!(
        status(
            &app,
            &read.client,
            "DELETE",
            &format!("/api/keys/{}", ingest.id),
            json!(null)
        )
        .await,
        403
    );

    // A tenant key touches its tenant only.
    assert_eq!(
        status(&app, &acme.client, "POST", "/api/events", event("acme")).await,
        202
    );
    assert_eq!(
        status(&app, &acme.client, "POST", "/api/events", event("globex")).await,
        403
    );
    let mixed = json!({"events": [event("acme"), event("globex")]});
    assert_eq!(
        status(&app, &acme.client, "POST", "/api/events/batch", mixed).await,
        403
    );
    assert_ne!(get_status(&app, &acme.client, "/api/usage/acme").await, 403);
    assert_ne!(
        get_status(&app, &acme.client, "/api/usage/acme/timeseries").await,
        403
    );
    for path in [
        "/api/usage/globex",
        "/api/usage/globex/timeseries",
        "/api/usage",
        "/api/usage/stream",
        "/api/tenants/acme",
    ] {
        assert_eq!(
            get_status(&app, &acme.client, path).await,
            403,
            "acme key: GET {path}"
        );
    }
    let refused = acme.get("/api/usage/globex").await;
    let body = assert_client_error(refused, 403).await;
    assert_eq!(
        body["details"],
        json!({"field": "tenant", "reason": "globex is not this key's tenant"})
    );

    // An admin key does everything.
    assert_eq!(
        status(&app, &admin.client, "PUT", "/api/tenants/acme", tenant).await,
        201
    );
    assert_eq!(
        status(&app, &admin.client, "POST", "/api/events", event("initech")).await,
        202
    );
    assert_eq!(get_status(&app, &admin.client, "/api/keys").await, 200);
}

#[tokio::test]
async fn keys_are_listed_without_secrets_and_refused_when_malformed() {
    let app = spawn_app().await;
    let key = create_key(&app, json!({"name": " reporting ", "scopes": ["read"]})).await;
    assert!(key.secret.starts_with("fmk_") && key.secret.len() == 68);

    // Using it records when.
    assert_eq!(get_status(&app, &key.client, "/api/usage").await, 200);
    let (code, listing) = app.get_json("/api/keys").await;
    assert_eq!(code, 200);
    assert!(!listing.to_string().contains(&key.secret[4..]), "{listing}");
    let listed = listing["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == key.id.as_str())
        .unwrap();
    assert_eq!(listed["name"], "reporting");
    assert_eq!(listed["scopes"], json!(["read"]));
    assert_eq!(listed["prefix"], &key.secret[..12]);
    assert!(listed["lastUsedAt"].is_string(), "{listed}");
    assert!(listed.get("revokedAt").is_none());

    for (body, field) in [
        (
            json!({"name": "x", "scopes": ["admin"], "tenant": "acme"}),
            "scopes",
        ),
        (
            json!({"name": "x", "scopes": ["read"], "tenant": "-bad"}),
            "tenant",
        ),
        (json!({"name": "   ", "scopes": ["read"]}), "name"),
        (json!({"name": "a\u{7}b", "scopes": ["read"]}), "name"),
    ] {
        let response = app.post("/api/keys", &body).await;
        let error = assert_client_error(response, 400).await;
        assert_eq!(error["details"]["field"], field, "{body}: {error}");
    }
    for body in [
        json!({"name": "x", "scopes": []}),
        json!({"name": "x", "scopes": ["root"]}),
        json!({"name": "x"}),
    ] {
        assert_client_error(app.post("/api/keys", &body).await, 400).await;
    }
    let unknown = app
        .delete("/api/keys/0194b9a2-8f1c-7000-8000-000000000000")
        .await;
    assert_client_error(unknown, 404).await;
    let malformed = app.delete("/api/keys/not-a-uuid").await;
    assert_client_error(malformed, 400).await;
}

#[tokio::test]
async fn a_revoked_key_stops_working_on_every_replica() {
    let app = spawn_app_with(|config| config.auth.key_cache_ms = 300).await;
    let replica = app.spawn_replica().await;
    let key = create_key(&app, json!({"name": "leaked", "scopes": ["read"]})).await;
    let on_replica = |key: &Key| key.client.get(format!("{replica}/api/usage")).send();
    assert_eq!(on_replica(&key).await.unwrap().status().as_u16(), 200);
    assert_eq!(get_status(&app, &key.client, "/api/usage").await, 200);

    let revoked = revoke(&app, &key.id).await;
    assert_eq!(revoked.status().as_u16(), 204);
    // At once on the replica that revoked it ...
    assert_eq!(get_status(&app, &key.client, "/api/usage").await, 401);
    // ... and on the other within its key cache's lifetime.
    testkit::eventually(
        "the replica refuses the revoked key",
        Duration::from_secs(5),
        || async {
            let code = on_replica(&key).await.unwrap().status().as_u16();
            assert!(code == 401 || code == 200, "{code}");
            if code == 401 { Ok(()) } else { Err(code) }
        },
    )
    .await;
    // Revoking again changes nothing; the listing says when.
    let again = revoke(&app, &key.id).await;
    assert_eq!(again.status().as_u16(), 204);
    let (_, listing) = app.get_json("/api/keys").await;
    assert!(listing["keys"][0]["revokedAt"].is_string(), "{listing}");
}

#[tokio::test]
async fn a_key_over_its_rate_limit_gets_429s_with_retry_after() {
    let app = spawn_app_with(|config| config.auth.rate_limit_per_sec = 100).await;
    let busy = create_key(&app, json!({"name": "busy", "scopes": ["read"]})).await;
    let calm = create_key(&app, json!({"name": "calm", "scopes": ["read"]})).await;
    let url = format!("{}/api/usage", app.base);
    let requests = (0..600).map(|_| {
        let (client, url) = (busy.client.clone(), url.clone());
        tokio::spawn(async move { client.get(url).send().await.unwrap() })
    });
    let mut limited = 0;
    let mut served = 0;
    for request in requests.collect::<Vec<_>>() {
        let response = request.await.unwrap();
        match response.status().as_u16() {
            200 => served += 1,
            429 => {
                let retry_after: u64 = response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
                assert_client_error(response, 429).await;
                limited += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(limited >= 300, "{limited} of 600 limited");
    assert!(served >= 100, "{served} of 600 served (the burst at least)");
    // Another key has its own budget, and the busy one recovers.
    assert_eq!(get_status(&app, &calm.client, "/api/usage").await, 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(get_status(&app, &busy.client, "/api/usage").await, 200);
}

#[tokio::test]
async fn no_secret_is_stored_in_plain_anywhere_in_the_database() {
    let app = spawn_app().await;
    let mut secrets = Vec::new();
    for name in ["one", "two", "three"] {
        let key = create_key(&app, json!({"name": name, "scopes": ["ingest", "read"]})).await;
        assert_eq!(
            status(&app, &key.client, "POST", "/api/events", event("acme")).await,
            202
        );
        secrets.push(key.secret);
    }
    let db = &app.env.db;
    let tables = db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
        ))
        .await
        .unwrap();
    assert!(tables.len() >= 6);
    for table in tables {
        let table: String = table.try_get("", "tablename").unwrap();
        for secret in &secrets {
            // The hex part too, in case something stored it without `fmk_`.
            let sql = format!(
                "SELECT count(*) AS n FROM \"{table}\" t WHERE t::text ILIKE '%{}%'",
                &secret[4..]
            );
            let row = db
                .query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    sql,
                ))
                .await
                .unwrap()
                .unwrap();
            let n: i64 = row.try_get("", "n").unwrap();
            assert_eq!(n, 0, "a secret in {table}");
        }
    }
}

#[tokio::test]
async fn the_keys_command_creates_lists_and_revokes_keys() {
    let app = spawn_app().await;
    let run = |args: &[&str]| {
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
    };
    let (ok, stdout, stderr) = run(&[
        "keys", "create", "--name", "cli", "--scope", "read", "--scope", "ingest", "--tenant",
        "acme",
    ]);
    assert!(ok, "{stderr}");
    let secret = stdout.trim().to_owned();
    assert!(secret.starts_with("fmk_"), "{stdout}");
    let key = client_with_key(&secret);
    assert_eq!(
        status(&app, &key, "POST", "/api/events", event("acme")).await,
        202
    );
    assert_eq!(
        status(&app, &key, "POST", "/api/events", event("globex")).await,
        403
    );

    let (ok, listing, _) = run(&["keys", "list"]);
    assert!(
        ok && listing.contains("cli") && listing.contains("tenant=acme"),
        "{listing}"
    );
    assert!(!listing.contains(&secret));
    let id = listing.split_whitespace().next().unwrap().to_owned();

    let (ok, _, stderr) = run(&[
        "keys", "create", "--name", "x", "--scope", "admin", "--tenant", "acme",
    ]);
    assert!(!ok && stderr.contains("scopes"), "{stderr}");
    let (ok, _, stderr) = run(&["keys", "create", "--name", "x", "--scope", "root"]);
    assert!(!ok && stderr.contains("unknown scope"), "{stderr}");

    let (ok, _, stderr) = run(&["keys", "revoke", &id]);
    assert!(ok, "{stderr}");
    testkit::eventually(
        "the revoked key stops working",
        Duration::from_secs(5),
        || async {
            match get_status(&app, &key, "/api/usage/acme").await {
                401 => Ok(()),
                code => Err(code),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn an_open_event_stream_ends_when_its_key_is_revoked() {
    use futures::StreamExt;
    let app = spawn_app_with(|config| config.auth.key_cache_ms = 300).await;
    let key = create_key(&app, json!({"name": "viewer", "scopes": ["read"]})).await;
    let response = key.get("/api/usage/stream").await;
    assert_eq!(response.status().as_u16(), 200);
    let mut stream = response.bytes_stream();
    assert!(stream.next().await.is_some(), "the stream sends something");

    let revoked = revoke(&app, &key.id).await;
    assert_eq!(revoked.status().as_u16(), 204);
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = stream.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived its key");
}

#[tokio::test]
async fn a_batch_costs_one_request_per_event() {
    let app = spawn_app_with(|config| config.auth.rate_limit_per_sec = 100).await;
    let key = create_key(&app, json!({"name": "batcher", "scopes": ["ingest"]})).await;
    let batch = |n: usize| json!({"events": vec![event("acme"); n]});
    assert_eq!(
        status(&app, &key.client, "POST", "/api/events/batch", batch(100)).await,
        202
    );
    let refused = key
        .client
        .post(format!("{}/api/events/batch", app.base))
        .json(&batch(50))
        .send()
        .await
        .unwrap();
    assert!(refused.headers().contains_key("retry-after"));
    assert_client_error(refused, 429).await;
}

#[tokio::test]
async fn a_batch_larger_than_the_burst_is_accepted_once_the_bucket_is_full() {
    let app = spawn_app_with(|config| config.auth.rate_limit_per_sec = 10).await;
    let key = create_key(&app, json!({"name": "big batches", "scopes": ["ingest"]})).await;
    let post = || {
        key.client
            .post(format!("{}/api/events/batch", app.base))
            .json(&json!({"events": vec![event("acme"); 50]}))
            .send()
    };
    // The bucket starts full: the batch costs the whole burst, and fits.
    assert_eq!(post().await.unwrap().status().as_u16(), 202);
    let refused = post().await.unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    // A client that waits as long as it is told gets through.
    let mut retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(retry_after)).await;
        let again = post().await.unwrap();
        if again.status().as_u16() == 202 {
            return;
        }
        assert_eq!(again.status().as_u16(), 429);
        retry_after = again.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
    }
    panic!("a batch larger than the burst was never accepted");
}

#[tokio::test]
async fn a_body_without_a_key_is_refused_before_it_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let addr = app.base.trim_start_matches("http://");
    for auth in ["", "Authorization: Bearer fmk_unknown\r\n"] {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        // Headers announcing a large body, and then no body at all.
        let head = format!(
            "POST /api/events/batch HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: 200000\r\n\r\n"
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0; 512];
        let read = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut answer))
            .await
            .expect("answered without waiting for the body")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..read]);
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    }
}
