//! Signed generic webhooks: the secret's life (issued once, masked, rotated)
//! and deliveries that a local receiver verifies as docs/api.md says, one per
//! threshold and destination, through failures and a 429; a rotation that
//! loses no alert, checked by a receiver using the real `standardwebhooks`
//! package; and the URL rules that the Slack webhook and the signed one
//! both apply.

use std::{collections::BTreeMap, time::Duration};

use chrono::Utc;
use reqwest::Method;
use serde_json::{Value, json};
use testkit::{
    TestApp, assert_client_error, env as testing, eventually, fake_slack::FakeSlack, spawn_app,
    spawn_app_with, standard_webhooks::Receiver,
};

use crate::support::{assert_deleted, signed_webhook, slack_webhook};

#[tokio::test]
async fn a_webhook_secret_is_shown_once_masked_after_and_rotated_on_demand() {
    let app = spawn_app().await;
    app.put_tenant("acme", json!({"monthlyQuota": 1000})).await;
    let url = "http://127.0.0.1:9/hooks/acme/token";

    let created = app
        .put("/api/tenants/acme/webhook", &json!({ "url": url }))
        .await;
    assert_eq!(created.status().as_u16(), 201);
    let created: Value = created.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let (_, shown) = app.get_json("/api/tenants/acme/webhook").await;
    let updated = app
        .put(
            "/api/tenants/acme/webhook",
            &json!({ "url": url, "enabled": false }),
        )
        .await;
    assert_eq!(updated.status().as_u16(), 200);
    let updated: Value = updated.json().await.unwrap();
    let rotated = app
        .send(
            Method::POST,
            "/api/tenants/acme/webhook/rotate-secret",
            None,
        )
        .await;
    assert_eq!(rotated.status().as_u16(), 200);
    let rotated: Value = rotated.json().await.unwrap();

    assert!(
        secret.starts_with("whsec_") && secret.len() > 40,
        "{secret}"
    );
    assert_eq!(shown["secret"], format!("{}****", &secret[..10]));
    assert_eq!(shown["url"], "http://127.0.0.1:9/hooks/****");
    assert_eq!(shown["enabled"], true);
    assert_eq!(
        updated["secret"], shown["secret"],
        "an update keeps the secret"
    );
    assert_eq!(updated["enabled"], false);
    let new_secret = rotated["secret"].as_str().unwrap();
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);
    let until = rotated["previousSecretsExpireAt"]
        .as_str()
        .and_then(|t| t.parse::<chrono::DateTime<Utc>>().ok())
        .expect("the old secret signs until a stated time");
    let grace = until - Utc::now();
    assert!(
        grace > chrono::Duration::hours(23) && grace <= chrono::Duration::hours(24),
        "a day by default: {grace}"
    );
    let (_, shown) = app.get_json("/api/tenants/acme/webhook").await;
    assert_eq!(
        shown["previousSecretsExpireAt"],
        rotated["previousSecretsExpireAt"]
    );
    assert!(
        created.get("previousSecretsExpireAt").is_none(),
        "{created}"
    );
    assert_deleted(&app, "/api/tenants/acme/webhook").await;
    assert_client_error(app.delete("/api/tenants/acme/webhook").await, 404).await;
    let refused = app
        .send(
            Method::POST,
            "/api/tenants/acme/webhook/rotate-secret",
            None,
        )
        .await;
    assert_client_error(refused, 404).await;
}

#[tokio::test]
async fn webhook_urls_off_the_allow_list_and_unknown_tenants_are_refused() {
    let app = spawn_app().await;
    app.put_tenant("acme", json!({"monthlyQuota": 1000})).await;
    // For each kind of webhook: URLs it refuses, and one it would accept.
    let kinds: [(&str, &[&str], &str); 2] = [
        (
            "slack-webhook",
            &[
                "https://hooks.slack.com.evil.example/services/x",
                "https://evil.example.com/services/x",
                "http://10.0.0.1/services/x",
                "http://169.254.169.254/latest/meta-data",
                "http://[fe80::1]/x",
                "http://user:pw@127.0.0.1/services/x",
                "ftp://127.0.0.1/services/x",
                "javascript:alert(1)",
                "file:///etc/passwd",
                "not a url",
            ],
            "http://127.0.0.1/services/a",
        ),
        (
            "webhook",
            &[
                "https://evil.example.com/hook",
                "http://169.254.169.254/latest/meta-data",
                "http://user:pw@127.0.0.1:9/hook",
                "not a url",
            ],
            "http://127.0.0.1:9/hook",
        ),
    ];
    for (hook, refused, allowed) in kinds {
        let path = format!("/api/tenants/acme/{hook}");
        for url in refused {
            let answer = app.put(&path, &json!({ "url": url })).await;
            let body = assert_client_error(answer, 400).await;
            assert_eq!(body["details"]["field"], "url", "{hook} {url}: {body}");
        }
        let unknown = format!("/api/tenants/nobody/{hook}");
        let answer = app.put(&unknown, &json!({ "url": allowed })).await;
        assert_client_error(answer, 404).await;
    }
}

#[tokio::test]
async fn each_destination_gets_one_verified_message_per_threshold_through_failures() {
    let app = spawn_app().await;
    let slack = FakeSlack::start(&[(500, None)]).await;
    let receiver = FakeSlack::start(&[(500, None), (429, Some(1))]).await;
    app.put_tenant(
        "acme",
        json!({"monthlyQuota": 1000, "alertThresholds": [50, 80]}),
    )
    .await;
    slack_webhook(&app, "acme", &slack).await;
    let secret = signed_webhook(&app, "acme", &receiver.webhook_url).await;
    let worker = app.env.spawn_pipeline("w");

    for (id, tokens) in [("a", 600), ("b", 250)] {
        app.post_event(&json!({"tenant": "acme", "id": id, "feature": "gpt-4o", "tokens": tokens}))
            .await;
        app.wait_for_total(
            "acme",
            if id == "a" { 600 } else { 850 },
            Duration::from_secs(20),
        )
        .await;
    }
    eventually(
        "both destinations got both",
        Duration::from_secs(30),
        || async {
            let done = |f: &FakeSlack| f.requests().iter().filter(|r| r.status == 200).count();
            match (done(&slack), done(&receiver)) {
                (2, 2) => Ok(()),
                other => Err(other),
            }
        },
    )
    .await;
    // Nothing more arrives once both are delivered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker.stop().await;

    let requests = receiver.requests();
    assert_eq!(requests.len(), 4, "two failed attempts, two deliveries");
    assert!(
        requests.iter().all(|r| r.signed_by(&secret)),
        "every attempt verifies"
    );
    assert!(!requests[0].signed_by(WRONG_SECRET));
    let mut by_id: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    for r in &requests {
        by_id
            .entry(r.header("webhook-id").unwrap().to_owned())
            .or_default()
            .push(r.status);
    }
    assert_eq!(by_id.len(), 2, "one message id per threshold: {by_id:?}");
    for id in by_id.keys() {
        let uuid = id.strip_prefix("msg_").expect("msg_ and a UUID");
        let uuid = uuid::Uuid::parse_str(uuid).expect("a UUID");
        assert_eq!(uuid.get_version_num(), 7, "{id}");
    }
    for statuses in by_id.values() {
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "{by_id:?}"
        );
    }
    let mut thresholds: Vec<i64> = requests
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| {
            let body = r.json();
            assert_eq!(body["type"], "alert.threshold_crossed");
            assert_eq!(body["kind"], "quota");
            assert_eq!(body["tenant"], "acme");
            assert_eq!(body["quota"], 1000);
            assert!(body["periodStart"].as_str().unwrap().ends_with('Z'));
            assert!(body["periodEnd"].is_string() && body["usageTokens"].is_i64());
            body["threshold"].as_i64().unwrap()
        })
        .collect();
    thresholds.sort();
    assert_eq!(thresholds, [50, 80]);
    let slack_delivered: Vec<Value> = slack.delivered();
    assert_eq!(slack_delivered.len(), 2, "Slack too, once per threshold");
}

const WRONG_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::test]
async fn an_alert_for_a_tenant_with_only_a_signed_webhook_is_delivered_there() {
    let app = spawn_app().await;
    let receiver = FakeSlack::start(&[]).await;
    app.put_tenant("acme", json!({"monthlyQuota": 1000})).await;
    let secret = signed_webhook(&app, "acme", &receiver.webhook_url).await;
    let worker = app.env.spawn_pipeline("w");

    app.env
        .write(
            &[testing::event("acme", "1", "gpt-4o", 900, Utc::now())],
            1000,
        )
        .await;
    let delivered = receiver.wait_for_requests(1, Duration::from_secs(20)).await;
    worker.stop().await;

    let delivery = &delivered[0];
    assert!(delivery.signed_by(&secret));
    assert_eq!(delivery.json()["usageTokens"], 900);
    let (_, alerts) = app.get_json("/api/tenants/acme/alerts").await;
    let alert = &alerts[0];
    assert_eq!(
        alert["status"], "delivered",
        "it reached its one destination"
    );
    assert_eq!(alert["slack"]["status"], "no_webhook", "no Slack webhook");
    assert_eq!(alert["slack"]["attempts"], 0);
    assert_eq!(alert["webhook"]["status"], "delivered");
    assert_eq!(alert["webhook"]["attempts"], 1);
    assert_eq!(
        alert["webhook"]["webhookId"].as_str(),
        delivery.header("webhook-id"),
        "the history names the message the receiver got"
    );
}

/// Crosses the next of `tenant`'s 10 % thresholds (a quota of 1000), by
/// sending 100 more tokens as event `id`.
async fn cross_next_threshold(app: &TestApp, tenant: &str, id: &str, total: i64) {
    app.post_event(&json!({"tenant": tenant, "id": id, "feature": "gpt-4o", "tokens": 100}))
        .await;
    app.wait_for_total(tenant, total, Duration::from_secs(20))
        .await;
}

/// Rotates `tenant`'s webhook secret; returns the new one.
async fn rotate(app: &TestApp, tenant: &str) -> String {
    let path = format!("/api/tenants/{tenant}/webhook/rotate-secret");
    let (status, rotated) = {
        let response = app.send(Method::POST, &path, None).await;
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        )
    };
    assert_eq!(status, 200, "{rotated}");
    rotated["secret"].as_str().unwrap().to_owned()
}

/// Tenant `acme` with a quota of 1000 and a threshold every 10 %, its
/// signed webhook at a receiver that trusts its secret, and a replica
/// counting and delivering.
async fn watched_by_receiver(app: &TestApp) -> (Receiver, testing::Replica) {
    let receiver = Receiver::start().await;
    let thresholds: Vec<i32> = (1..=10).map(|t| t * 10).collect();
    app.put_tenant(
        "acme",
        json!({"monthlyQuota": 1000, "alertThresholds": thresholds}),
    )
    .await;
    let secret = signed_webhook(app, "acme", &receiver.url()).await;
    receiver.trust(&[&secret]).await;
    (receiver, app.env.spawn_pipeline("w"))
}

#[tokio::test]
async fn a_rotation_loses_no_alert_at_a_receiver_that_switches_secrets_later() {
    let app = spawn_app().await;
    let (receiver, worker) = watched_by_receiver(&app).await;

    // Before the rotation, with the old secret.
    cross_next_threshold(&app, "acme", "1", 100).await;
    receiver.wait_for_verified(1, Duration::from_secs(20)).await;
    // Rotated: the receiver still knows only the old secret.
    let new = rotate(&app, "acme").await;
    cross_next_threshold(&app, "acme", "2", 200).await;
    cross_next_threshold(&app, "acme", "3", 300).await;
    receiver.wait_for_verified(3, Duration::from_secs(20)).await;
    // The receiver switches to the new secret alone.
    receiver.trust(&[&new]).await;
    cross_next_threshold(&app, "acme", "4", 400).await;
    let received = receiver.wait_for_verified(4, Duration::from_secs(20)).await;
    worker.stop().await;

    assert!(
        received.iter().all(|d| d.status == 204),
        "nothing refused: {received:?}"
    );
    let verified_by: Vec<Option<usize>> = received.iter().map(|d| d.verified_by).collect();
    assert_eq!(
        verified_by,
        [Some(0); 4],
        "each verified with the one secret the receiver trusted then"
    );
    let thresholds: Vec<&Value> = received.iter().map(|d| &d.body["threshold"]).collect();
    assert_eq!(thresholds, [10, 20, 30, 40]);
    let ids: std::collections::BTreeSet<&str> =
        received.iter().map(|d| d.webhook_id.as_str()).collect();
    assert_eq!(ids.len(), 4, "one message id per alert");
    let (_, history) = app.get_json("/api/tenants/acme/alerts").await;
    let statuses: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["webhook"]["status"])
        .collect();
    assert_eq!(statuses, ["delivered"; 4], "{history}");
}

#[tokio::test]
async fn without_a_grace_period_a_receiver_that_has_not_switched_refuses_the_alert() {
    let app = spawn_app_with(|config| config.webhook_rotation_grace_secs = 0).await;
    let (receiver, worker) = watched_by_receiver(&app).await;

    rotate(&app, "acme").await;
    cross_next_threshold(&app, "acme", "1", 100).await;
    let refused = eventually(
        "the delivery is refused",
        Duration::from_secs(20),
        || async {
            let received = receiver.received().await;
            match received.as_slice() {
                [only] if only.status == 401 => Ok(only.clone()),
                _ => Err(received),
            }
        },
    )
    .await;
    let (_, history) = eventually("the refusal is final", Duration::from_secs(20), || async {
        let (status, history) = app.get_json("/api/tenants/acme/alerts").await;
        if history[0]["webhook"]["status"] == "failed" {
            Ok((status, history))
        } else {
            Err(history)
        }
    })
    .await;
    worker.stop().await;

    assert_eq!(refused.verified_by, None);
    assert_eq!(history[0]["status"], "failed", "{history}");
    assert!(
        history[0]["webhook"]["lastError"]
            .as_str()
            .is_some_and(|e| e.starts_with("401")),
        "{history}"
    );
}
