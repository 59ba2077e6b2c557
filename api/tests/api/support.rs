//! What the alert tests share beyond testkit: pointing a tenant's Slack
//! webhook or signed webhook at a local receiver, and removing one.

use serde_json::{Value, json};
use testkit::{TestApp, assert_client_error, fake_slack::FakeSlack};

/// Points `tenant`'s Slack webhook at `slack`.
pub async fn slack_webhook(app: &TestApp, tenant: &str, slack: &FakeSlack) {
    let path = format!("/api/tenants/{tenant}/slack-webhook");
    let saved = app.put(&path, &json!({ "url": slack.url })).await;
    assert!(saved.status().is_success(), "{}", saved.status());
}

/// Points `tenant`'s signed webhook at `receiver`; returns its secret.
pub async fn signed_webhook(app: &TestApp, tenant: &str, url: &str) -> String {
    let path = format!("/api/tenants/{tenant}/webhook");
    let saved = app.put(&path, &json!({ "url": url })).await;
    assert!(saved.status().is_success(), "{}", saved.status());
    let created: Value = saved.json().await.unwrap();
    created["secret"].as_str().unwrap().to_owned()
}

/// Asserts that `DELETE path` answers 204 and that `GET path` is a 404
/// afterwards.
pub async fn assert_deleted(app: &TestApp, path: &str) {
    assert_eq!(app.delete(path).await.status().as_u16(), 204);
    assert_client_error(app.get(path).await, 404).await;
}
